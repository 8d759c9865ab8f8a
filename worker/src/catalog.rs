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
    let mut records = Vec::new();
    let mut damaged = Vec::new();
    for obj in storage.list(prefix)? {
        let Some((hn, chain, dir)) = manifest_key_parts(&obj.key) else {
            continue;
        };
        let parsed = storage
            .get(&obj.key)
            .and_then(|bytes| Manifest::parse(&bytes, &storage.describe(&obj.key)));
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
