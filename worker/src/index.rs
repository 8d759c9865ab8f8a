//! The file index (worker/FORMAT.md, "index"): every entry present at backup time, where its
//! content lives, and the metadata restore applies. Stored as zstd-compressed JSON Lines.

use crate::error::{Error, Result};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashSet;
use std::io::Write;
use std::sync::Arc;

/// Raw path bytes (relative, `/`-separated); JSON string when UTF-8, `{"hex": ...}` otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct BytePath(pub Vec<u8>);

impl Serialize for BytePath {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(text) => s.serialize_str(text),
            Err(_) => {
                use serde::ser::SerializeMap;
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("hex", &hex::encode(&self.0))?;
                m.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for BytePath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Text(String),
            Hex { hex: String },
        }
        match Repr::deserialize(d)? {
            Repr::Text(t) => Ok(BytePath(t.into_bytes())),
            Repr::Hex { hex } => hex::decode(hex).map(BytePath).map_err(D::Error::custom),
        }
    }
}

impl std::fmt::Display for BytePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", String::from_utf8_lossy(&self.0))
    }
}

/// Nanoseconds since the epoch of a (seconds, nanoseconds) pair; i128 so that times past 2262
/// (beyond i64 nanoseconds) are kept exactly.
pub fn nanos(secs: i64, nsec: i64) -> i128 {
    secs as i128 * 1_000_000_000 + nsec as i128
}

/// The type of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryType {
    /// Regular file with content.
    File,
    /// Directory.
    Dir,
    /// Symbolic link (`link` is its target).
    Symlink,
    /// Another name of a `file` entry (`link` is that entry's path).
    Hardlink,
    /// Named pipe.
    Fifo,
    /// Character device.
    Char,
    /// Block device.
    Block,
}

impl EntryType {
    /// The type of an `st_mode`; `None` for sockets, which are not archived (as tar does).
    pub fn from_mode(mode: u32) -> Option<EntryType> {
        Some(match mode & libc::S_IFMT {
            libc::S_IFREG => EntryType::File,
            libc::S_IFDIR => EntryType::Dir,
            libc::S_IFLNK => EntryType::Symlink,
            libc::S_IFIFO => EntryType::Fifo,
            libc::S_IFCHR => EntryType::Char,
            libc::S_IFBLK => EntryType::Block,
            _ => return None,
        })
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One entry of the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Relative path; `.` is the root directory.
    pub path: BytePath,
    /// Type.
    #[serde(rename = "type")]
    pub kind: EntryType,
    /// Size in bytes (files).
    #[serde(default)]
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Owner id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Owner name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<Arc<str>>,
    /// Group name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<Arc<str>>,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i128,
    /// Change time, ns since the epoch.
    pub ctime_ns: i128,
    /// Inode number.
    #[serde(default)]
    pub ino: u64,
    /// Device (ignored by change detection: snapshot mounts change it).
    #[serde(default)]
    pub dev: u64,
    /// Link count.
    #[serde(default)]
    pub nlink: u64,
    /// Symlink target, or the path a hard link shares content with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<BytePath>,
    /// Device number of char/block entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdev: Option<u64>,
    /// Extended attributes: name, hex value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xattrs: Vec<(BytePath, String)>,
    /// Backup id whose archive holds this file's content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_in: Option<Arc<str>>,
    /// The file changed while being read; the next backup stores it again.
    #[serde(default, skip_serializing_if = "is_false")]
    pub incomplete: bool,
}

impl Entry {
    /// Whether `self` (from the live tree) is unchanged since `old` (from the parent index).
    pub fn unchanged_since(&self, old: &Entry) -> bool {
        self.kind == old.kind
            && self.size == old.size
            && self.mtime_ns == old.mtime_ns
            && self.ctime_ns == old.ctime_ns
            && self.ino == old.ino
            && self.mode == old.mode
            && self.uid == old.uid
            && self.gid == old.gid
            && self.link == old.link
            && !old.incomplete
            && (old.kind != EntryType::File || old.stored_in.is_some())
    }

    /// Decoded extended attributes.
    pub fn xattr_pairs(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.xattrs
            .iter()
            .filter_map(|(n, v)| Some((n.0.clone(), hex::decode(v).ok()?)))
            .collect()
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    format_version: u32,
    entries: u64,
    backup_id: String,
}

/// Serializes entries to the stored (pre-encryption) form in one go (tests; backups stream
/// through [`IndexWriter`]).
#[cfg(test)]
pub fn encode(backup_id: &str, entries: &[Entry]) -> Result<Vec<u8>> {
    let z = zstd::stream::write::Encoder::new(Vec::new(), 3)
        .map_err(|e| Error::failure(format!("index compression: {e}")))?;
    // Many small JSON writes: buffer them so zstd sees large blocks.
    let mut z = std::io::BufWriter::with_capacity(1 << 20, z);
    let io = |e: std::io::Error| Error::failure(format!("index encoding: {e}"));
    let header = Header {
        format_version: 1,
        entries: entries.len() as u64,
        backup_id: backup_id.to_string(),
    };
    serde_json::to_writer(&mut z, &header).map_err(|e| Error::failure(e.to_string()))?;
    z.write_all(b"\n").map_err(io)?;
    for e in entries {
        serde_json::to_writer(&mut z, e).map_err(|e| Error::failure(e.to_string()))?;
        z.write_all(b"\n").map_err(io)?;
    }
    z.into_inner()
        .map_err(|e| io(e.into_error()))?
        .finish()
        .map_err(io)
}

/// Encodes the index on its own thread while the walk produces entries, so a backup's tail does
/// not wait for 50,000 lines of JSON, and the entries are not all held in memory.
pub struct IndexWriter {
    tx: crossbeam_channel::Sender<Entry>,
    handle: std::thread::JoinHandle<Result<Vec<u8>>>,
    /// Entries written.
    pub entries: u64,
    /// `file` entries written.
    pub files: u64,
}

impl IndexWriter {
    /// Starts the encoder for backup `backup_id`.
    pub fn spawn(backup_id: String) -> IndexWriter {
        let (tx, rx) = crossbeam_channel::bounded::<Entry>(4096);
        let handle = std::thread::spawn(move || -> Result<Vec<u8>> {
            let io = |e: std::io::Error| Error::failure(format!("index encoding: {e}"));
            let z = zstd::stream::write::Encoder::new(Vec::new(), 3).map_err(io)?;
            let mut z = std::io::BufWriter::with_capacity(1 << 20, z);
            let mut count = 0u64;
            for e in rx {
                serde_json::to_writer(&mut z, &e).map_err(|e| Error::failure(e.to_string()))?;
                z.write_all(b"\n").map_err(io)?;
                count += 1;
            }
            let body = z
                .into_inner()
                .map_err(|e| io(e.into_error()))?
                .finish()
                .map_err(io)?;
            // The header (which counts the entries) is its own zstd frame in front: frames
            // concatenate, so the stored index still decodes as one text.
            let header = Header {
                format_version: 1,
                entries: count,
                backup_id,
            };
            let mut line =
                serde_json::to_vec(&header).map_err(|e| Error::failure(e.to_string()))?;
            line.push(b'\n');
            let mut out = zstd::bulk::compress(&line, 3).map_err(io)?;
            out.extend_from_slice(&body);
            Ok(out)
        });
        IndexWriter {
            tx,
            handle,
            entries: 0,
            files: 0,
        }
    }

    /// Appends an entry.
    pub fn push(&mut self, e: Entry) -> Result<()> {
        self.entries += 1;
        if e.kind == EntryType::File {
            self.files += 1;
        }
        self.tx
            .send(e)
            .map_err(|_| Error::failure("the index encoder stopped"))
    }

    /// Ends the index and returns its stored (pre-encryption) bytes.
    pub fn finish(self) -> Result<Vec<u8>> {
        drop(self.tx);
        self.handle
            .join()
            .unwrap_or_else(|_| Err(Error::failure("the index encoder panicked")))
    }
}

/// Parses the stored (decrypted) form; `what` names the object in errors.
pub fn decode(data: &[u8], what: &str) -> Result<Vec<Entry>> {
    let bad = |m: String| Error::integrity(format!("{what}: damaged index: {m}"));
    // Decompress whole, then parse lines in place: no per-line allocation.
    let text = zstd::stream::decode_all(data).map_err(|e| bad(e.to_string()))?;
    let mut lines = text.split(|b| *b == b'\n').filter(|l| !l.is_empty());
    let header: Header = match lines.next() {
        Some(l) => serde_json::from_slice(l).map_err(|e| bad(e.to_string()))?,
        None => return Err(bad("empty".into())),
    };
    if header.format_version != 1 {
        return Err(bad(format!(
            "unknown index version {}",
            header.format_version
        )));
    }
    // Parse the two halves of the lines on two threads: the parent's index is on the critical
    // path of every incremental backup.
    let lines: Vec<&[u8]> = lines.collect();
    let (first, second) = lines.split_at(lines.len() / 2);
    let parse = |part: &[&[u8]]| -> Result<Vec<Entry>> {
        part.iter()
            .map(|l| serde_json::from_slice(l).map_err(|e| bad(e.to_string())))
            .collect()
    };
    let (a, b) = std::thread::scope(|s| {
        let h = s.spawn(|| parse(second));
        let a = parse(first);
        (
            a,
            h.join()
                .unwrap_or_else(|_| Err(bad("parser panicked".into()))),
        )
    });
    let mut out = a?;
    out.extend(b?);
    // Owner names and backup ids repeat on every line: share one copy of each.
    let mut strings: HashSet<Arc<str>> = HashSet::new();
    let mut intern = |v: &mut Option<Arc<str>>| {
        if let Some(s) = v {
            match strings.get(s) {
                Some(shared) => *v = Some(shared.clone()),
                None => {
                    strings.insert(s.clone());
                }
            }
        }
    };
    for e in &mut out {
        intern(&mut e.user);
        intern(&mut e.group);
        intern(&mut e.stored_in);
    }
    if out.len() as u64 != header.entries {
        return Err(bad(format!(
            "{} entries, header says {}",
            out.len(),
            header.entries
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &[u8]) -> Entry {
        Entry {
            path: BytePath(path.to_vec()),
            kind: EntryType::File,
            size: 3,
            mode: 0o644,
            uid: 0,
            gid: 0,
            user: Some("root".into()),
            group: None,
            mtime_ns: 1_795_614_195_123_456_789,
            ctime_ns: 1,
            ino: 5,
            dev: 7,
            nlink: 1,
            link: None,
            rdev: None,
            xattrs: vec![(BytePath(b"user.k".to_vec()), "00ff".into())],
            stored_in: Some("x".into()),
            incomplete: false,
        }
    }

    #[test]
    fn round_trips_non_utf8_paths() {
        let entries = vec![entry(b"a b/c"), entry(b"bad\xff\nname")];
        let data = encode("id", &entries).unwrap();
        assert_eq!(decode(&data, "t").unwrap(), entries);
        let json = serde_json::to_string(&entries[1]).unwrap();
        assert!(
            json.contains(r#""path":{"hex":"626164ff0a6e616d65"}"#),
            "{json}"
        );
    }

    #[test]
    fn times_past_2262_survive_the_json() {
        let mut e = entry(b"f");
        e.mtime_ns = nanos(10_413_792_000, 5);
        e.ctime_ns = nanos(-1, 999_999_999);
        let back = decode(&encode("id", std::slice::from_ref(&e)).unwrap(), "t").unwrap();
        assert_eq!(back[0].mtime_ns, 10_413_792_000_000_000_005);
        assert_eq!(back[0].ctime_ns, -1);
    }

    #[test]
    fn change_detection_ignores_device_only() {
        let a = entry(b"f");
        let mut b = a.clone();
        b.dev = 99;
        assert!(b.unchanged_since(&a));
        b.ctime_ns += 1;
        assert!(!b.unchanged_since(&a));
    }

    #[test]
    fn streamed_index_decodes_like_the_one_shot_encoding() {
        let entries = vec![entry(b"a"), entry(b"b/c")];
        let mut w = IndexWriter::spawn("id".into());
        for e in &entries {
            w.push(e.clone()).unwrap();
        }
        assert_eq!(w.files, 2);
        let data = w.finish().unwrap();
        assert_eq!(decode(&data, "t").unwrap(), entries);
    }

    #[test]
    fn truncated_index_is_rejected() {
        let data = encode("id", &[entry(b"f")]).unwrap();
        assert!(decode(&data[..data.len() - 3], "t").is_err());
    }
}
