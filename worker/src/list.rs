//! The `list` command: every backup in a container with its level, kind, parent, time, size and
//! file count, as a table or as JSON.

use crate::catalog::{self, Record};
use crate::error::{Error, Result};
use crate::progress::human_bytes;
use crate::storage::LocalStorage;
use serde::Serialize;
use std::path::Path;

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
}

fn row(container: &Path, r: &Record) -> Listed {
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
        path: container.join(&r.dir).display().to_string(),
    }
}

/// Lists backups, optionally of one name and/or host; returns rows and damaged-manifest notes.
pub fn list(
    container: &Path,
    name: Option<&str>,
    host: Option<&str>,
) -> Result<(Vec<Listed>, Vec<String>)> {
    if !container.is_dir() {
        return Err(Error::not_found(format!(
            "container {} does not exist",
            container.display()
        )));
    }
    let storage = LocalStorage::new(container);
    let (records, damaged) = match (host, name) {
        (Some(h), Some(n)) => catalog::load_name(&storage, h, n)?,
        _ => catalog::load(&storage, "")?,
    };
    let rows = records
        .iter()
        .filter(|r| name.is_none_or(|n| r.manifest.backup_name == n))
        .filter(|r| host.is_none_or(|h| r.manifest.hostname == h))
        .map(|r| row(container, r))
        .collect();
    Ok((rows, damaged.into_iter().map(|d| d.error.message).collect()))
}

/// The human-readable table.
pub fn table(rows: &[Listed]) -> String {
    let mut out = format!(
        "{:<28} {:<25} {:>5} {:<12} {:<25} {:>10} {:>8}\n",
        "NAME", "BACKUP", "LEVEL", "KIND", "PARENT", "STORED", "FILES"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<28} {:<25} {:>5} {:<12} {:<25} {:>10} {:>8}\n",
            format!("{}_{}", r.hostname, r.backup_name),
            r.backup_id,
            r.level,
            format!("{:?}", r.kind).to_lowercase(),
            r.parent_id.as_deref().unwrap_or("-"),
            human_bytes(r.bytes_stored),
            r.files
        ));
    }
    out
}
