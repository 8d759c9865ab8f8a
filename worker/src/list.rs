//! The `list` command: every backup in a container with its level, kind, parent, time, size and
//! file count, as a table or as JSON.

use crate::catalog::{self, Record};
use crate::error::Result;
use crate::progress::human_bytes;
use crate::storage::Storage;
use serde::Serialize;

/// One row of `list --json`.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    /// Host part of the key.
    pub hostname: String,
    /// Backup name.
    pub backup_name: String,
    /// Backup id.
    pub backup_id: String,
    /// Chain id.
    pub chain_id: String,
    /// Parent id.
    pub parent_id: Option<String>,
    /// Level.
    pub level: u32,
    /// full, incremental, differential.
    pub kind: crate::manifest::Kind,
    /// When it finished.
    pub finished_at: String,
    /// Bytes stored.
    pub bytes_stored: u64,
    /// Regular files in the backed-up tree.
    pub files: u64,
    /// Codec.
    pub compression: String,
    /// Whether encrypted.
    pub encrypted: bool,
    /// Its directory.
    pub path: String,
    /// Whether its chain is complete: its objects and every ancestor's are present with their
    /// recorded sizes (judged from the listing; `verify --read-data` reads them).
    pub restorable: bool,
    /// When it started.
    pub started_at: String,
    /// Segments stored.
    pub segments: usize,
    /// Index entries.
    pub entries: u64,
    /// Bytes of file content read at backup time.
    pub bytes_read: u64,
    /// Files that could not be read at backup time.
    pub unreadable: u64,
}

fn row(storage: &dyn Storage, r: &Record, restorable: bool) -> Listed {
    let m = &r.manifest;
    Listed {
        hostname: m.hostname.clone(),
        backup_name: m.backup_name.clone(),
        backup_id: m.backup_id.clone(),
        chain_id: m.chain_id.clone(),
        parent_id: m.parent_id.clone(),
        level: m.level,
        kind: m.kind,
        finished_at: m.finished_at.clone(),
        bytes_stored: m.totals.bytes_stored,
        files: m.totals.files,
        compression: m.compression.codec.name().to_string(),
        encrypted: m.encryption.is_some(),
        path: storage.describe(&r.dir),
        restorable,
        started_at: m.started_at.clone(),
        segments: m.segments.len(),
        entries: m.totals.entries,
        bytes_read: m.totals.bytes_read,
        unreadable: m.totals.unreadable,
    }
}

/// Lists backups, optionally of one name and/or host; returns rows and damaged-manifest notes.
pub fn list(
    storage: &dyn Storage,
    name: Option<&str>,
    host: Option<&str>,
) -> Result<(Vec<Listed>, Vec<String>)> {
    storage.check_container()?;
    let prefix = catalog::listing_prefix(host, name);
    let objects = storage.list(&prefix)?;
    let (records, damaged) = catalog::load_from(storage, &objects)?;
    let restorable = catalog::restorable(&records, &objects);
    let rows = records
        .iter()
        .filter(|r| name.is_none_or(|n| r.manifest.backup_name == n))
        .filter(|r| host.is_none_or(|h| r.manifest.hostname == h))
        .map(|r| {
            row(
                storage,
                r,
                restorable.get(&r.manifest.backup_id) == Some(&true),
            )
        })
        .collect();
    Ok((rows, damaged.into_iter().map(|d| d.error.message).collect()))
}

/// The human-readable table.
pub fn table(rows: &[Listed]) -> String {
    let mut out = format!(
        "{:<28} {:<25} {:>5} {:<12} {:<25} {:>10} {:>8} {}\n",
        "NAME", "BACKUP", "LEVEL", "KIND", "PARENT", "STORED", "FILES", "RESTORABLE"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<28} {:<25} {:>5} {:<12} {:<25} {:>10} {:>8} {}\n",
            format!("{}_{}", r.hostname, r.backup_name),
            r.backup_id,
            r.level,
            format!("{:?}", r.kind).to_lowercase(),
            r.parent_id.as_deref().unwrap_or("-"),
            human_bytes(r.bytes_stored),
            r.files,
            if r.restorable { "yes" } else { "NO" }
        ));
    }
    out
}
