//! The backups present in a container, read from their manifests: what `list` shows, what a new
//! backup chooses its parent from, and what restore picks its point in time from.

use crate::error::{Error, ErrorKind, Result};
use crate::manifest::Manifest;
use crate::storage::Storage;
use crate::timestamp::Timestamp;

/// One backup found in storage.
#[derive(Debug, Clone)]
pub struct Record {
    /// Key prefix of its directory: `<host>_<name>/<chain>/<level>_<id>`.
    pub dir: String,
    /// Its manifest.
    pub manifest: Manifest,
    /// The manifest as parsed JSON, for tag checks.
    pub raw: serde_json::Value,
    /// Its id as a timestamp.
    pub time: Timestamp,
}

/// A manifest that could not be read; reported, never used.
#[derive(Debug)]
pub struct Damaged {
    /// Key of the manifest.
    pub key: String,
    /// Why.
    pub error: Error,
}

/// The storage key prefix of one backup name.
pub fn name_prefix(hostname: &str, backup_name: &str) -> String {
    format!("{hostname}_{backup_name}")
}

/// The listing prefix for an optional host and name: one name's directory when both are known,
/// else the whole container (the caller filters).
pub fn listing_prefix(hostname: Option<&str>, backup_name: Option<&str>) -> String {
    match (hostname, backup_name) {
        (Some(h), Some(n)) => format!("{}/", name_prefix(h, n)),
        _ => String::new(),
    }
}

/// Whether `key` has the shape `<hn>/<chain>/<level>_<id>/manifest.json`.
fn manifest_key_parts(key: &str) -> Option<(&str, &str, &str)> {
    let rest = key.strip_suffix("/manifest.json")?;
    let mut parts = rest.split('/');
    let (hn, chain, dir) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    Timestamp::parse_id(chain)?;
    let (_, id) = dir.split_once('_')?;
    Timestamp::parse_id(id)?;
    Some((hn, chain, dir))
}

/// The backup time encoded in a manifest key, whether or not the manifest itself is readable.
pub fn time_from_key(key: &str) -> Option<Timestamp> {
    let (_, _, dir) = manifest_key_parts(key)?;
    Timestamp::parse_id(dir.split_once('_')?.1)
}

/// Loads every backup under `prefix` (`""` for the whole container, or a name prefix), sorted by
/// time; damaged manifests are returned apart.
pub fn load(storage: &dyn Storage, prefix: &str) -> Result<(Vec<Record>, Vec<Damaged>)> {
    load_from(storage, &storage.list(prefix)?)
}

/// The backup directory (`<hn>/<chain>/<level>_<id>`) an object key belongs to, if any.
pub fn backup_dir_of(key: &str) -> Option<&str> {
    let mut n = 0;
    for (i, b) in key.bytes().enumerate() {
        if b == b'/' {
            n += 1;
            if n == 3 {
                let dir = &key[..i];
                let mut parts = dir.split('/');
                let (_, chain, last) = (parts.next()?, parts.next()?, parts.next()?);
                Timestamp::parse_id(chain)?;
                Timestamp::parse_id(last.split_once('_')?.1)?;
                return Some(dir);
            }
        }
    }
    None
}

/// Like [`load`], from a listing already made (prune and verify list once and reuse it).
pub fn load_from(
    storage: &dyn Storage,
    objects: &[crate::storage::ObjectInfo],
) -> Result<(Vec<Record>, Vec<Damaged>)> {
    let mut records = Vec::new();
    let mut damaged = Vec::new();
    for obj in objects {
        let Some((hn, chain, dir)) = manifest_key_parts(&obj.key) else {
            continue;
        };
        let what = storage.describe(&obj.key);
        let parse = |bytes: &[u8]| Manifest::parse(bytes, &what);
        let parsed = storage
            .get_checked(&obj.key, &|bytes| parse(bytes).map(drop))
            .and_then(|bytes| parse(&bytes));
        match parsed {
            Ok((manifest, raw)) => {
                let time = Timestamp::parse_id(&manifest.backup_id);
                let consistent = time.is_some()
                    && dir.ends_with(&manifest.backup_id)
                    && chain == manifest.chain_id
                    && hn == name_prefix(&manifest.hostname, &manifest.backup_name);
                if !consistent {
                    damaged.push(Damaged {
                        key: obj.key.clone(),
                        error: Error::integrity(format!(
                            "{}: manifest does not match its location",
                            storage.describe(&obj.key)
                        )),
                    });
                    continue;
                }
                records.push(Record {
                    dir: format!("{hn}/{chain}/{dir}"),
                    manifest,
                    raw,
                    time: time.unwrap_or(Timestamp { micros: 0 }),
                });
            }
            Err(error) => damaged.push(Damaged {
                key: obj.key.clone(),
                error,
            }),
        }
    }
    records.sort_by_key(|r| r.time);
    Ok((records, damaged))
}

/// Loads the backups of one `<host>_<name>`.
pub fn load_name(
    storage: &dyn Storage,
    hostname: &str,
    backup_name: &str,
) -> Result<(Vec<Record>, Vec<Damaged>)> {
    load(storage, &format!("{}/", name_prefix(hostname, backup_name)))
}

/// The chain that restoring `target` needs, level 0 first; fails if an ancestor is missing.
pub fn chain_of<'a>(records: &'a [Record], target: &'a Record) -> Result<Vec<&'a Record>> {
    let mut chain = vec![target];
    let mut cur = target;
    while let Some(pid) = &cur.manifest.parent_id {
        let parent = records
            .iter()
            .find(|r| &r.manifest.backup_id == pid)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Integrity,
                    format!(
                        "backup {} needs its parent {pid}, whose manifest is missing or damaged",
                        cur.manifest.backup_id
                    ),
                )
            })?;
        if chain.len() > 10_000 || parent.time >= cur.time {
            return Err(Error::integrity(format!(
                "backup {} has an inconsistent parent chain",
                target.manifest.backup_id
            )));
        }
        chain.push(parent);
        cur = parent;
    }
    chain.reverse();
    Ok(chain)
}

/// The newest backup at or before `date` (all chains), as restore picks it.
pub fn pick_restore_point(records: &[Record], date: Option<Timestamp>) -> Option<&Record> {
    records
        .iter()
        .filter(|r| date.is_none_or(|d| r.time <= d))
        .max_by_key(|r| r.time)
}

/// Objects a backup needs that are missing or have the wrong size, judged from a listing (no
/// reads): its segments and its index.
pub fn missing_objects(
    rec: &Record,
    sizes: &std::collections::HashMap<&str, u64>,
    describe: impl Fn(&str) -> String,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut check = |key: String, want: u64, what: &str| match sizes.get(key.as_str()) {
        None => problems.push(format!("{what} {} is missing", describe(&key))),
        Some(&got) if got != want => problems.push(format!(
            "{what} {} has {got} bytes, the manifest says {want}",
            describe(&key)
        )),
        Some(_) => {}
    };
    for (k, seg) in rec.manifest.segments.iter().enumerate() {
        check(format!("{}/data/{k:08}", rec.dir), seg.size, "segment");
    }
    check(
        format!("{}/index", rec.dir),
        rec.manifest.index.size,
        "index",
    );
    problems
}

/// Whether each backup can be restored judged from a listing: its own objects and those of every
/// ancestor are present with their recorded sizes.
pub fn restorable(
    records: &[Record],
    objects: &[crate::storage::ObjectInfo],
) -> std::collections::HashMap<String, bool> {
    let sizes: std::collections::HashMap<&str, u64> =
        objects.iter().map(|o| (o.key.as_str(), o.size)).collect();
    let whole: std::collections::HashMap<&str, bool> = records
        .iter()
        .map(|r| {
            (
                r.manifest.backup_id.as_str(),
                missing_objects(r, &sizes, |k| k.to_string()).is_empty(),
            )
        })
        .collect();
    records
        .iter()
        .map(|r| {
            let ok = match chain_of(records, r) {
                Ok(chain) => chain
                    .iter()
                    .all(|c| whole.get(c.manifest.backup_id.as_str()) == Some(&true)),
                Err(_) => false,
            };
            (r.manifest.backup_id.clone(), ok)
        })
        .collect()
}
