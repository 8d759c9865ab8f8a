//! Backups on disk, read exactly as `worker/FORMAT.md` describes them: backup directories,
//! manifests and their tags, segments, the index of an unencrypted backup, canonical JSON.

use crate::sha256_hex;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};

/// The backup directory from a `backup --json` summary.
pub fn backup_dir(summary: &Value) -> PathBuf {
    PathBuf::from(
        summary["path"]
            .as_str()
            .unwrap_or_else(|| panic!("no \"path\" in {summary}")),
    )
}

/// The `manifest.json` of a backup directory, parsed.
pub fn read_manifest(backup_dir: &Path) -> Value {
    let p = backup_dir.join("manifest.json");
    let bytes = fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()))
}

/// Overwrites the `manifest.json` of a backup directory with `m` (to forge or damage one).
pub fn write_manifest(backup_dir: &Path, m: &Value) {
    fs::write(
        backup_dir.join("manifest.json"),
        serde_json::to_vec_pretty(m).unwrap(),
    )
    .unwrap();
}

/// The segment files `data/NNNNNNNN` in order.
pub fn segment_paths(backup_dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(backup_dir.join("data"))
        .unwrap_or_else(|e| panic!("read {}/data: {e}", backup_dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// All segments concatenated (`cat data/*`).
pub fn concat_segments(backup_dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for p in segment_paths(backup_dir) {
        out.extend(fs::read(p).unwrap());
    }
    out
}

/// Canonical JSON of FORMAT.md: keys sorted at every depth, no whitespace, non-ASCII as UTF-8.
pub fn canonical_json(v: &Value) -> String {
    let mut s = String::new();
    write_canonical(v, &mut s);
    s
}

fn write_canonical(v: &Value, s: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            s.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                s.push_str(&serde_json::to_string(k).unwrap());
                s.push(':');
                write_canonical(&m[k.as_str()], s);
            }
            s.push('}');
        }
        Value::Array(a) => {
            s.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                write_canonical(x, s);
            }
            s.push(']');
        }
        other => s.push_str(&serde_json::to_string(other).unwrap()),
    }
}

/// The canonical bytes that `manifest_tag` covers: the manifest without `manifest_tag`.
pub fn manifest_tag_input(m: &Value) -> String {
    let mut m = m.clone();
    m.as_object_mut()
        .expect("manifest is an object")
        .remove("manifest_tag");
    canonical_json(&m)
}

/// Recomputes `manifest_tag` of an unencrypted manifest (SHA-256 of the canonical JSON).
pub fn retag_unencrypted_manifest(m: &mut Value) {
    let tag = sha256_hex(manifest_tag_input(m).as_bytes());
    m["manifest_tag"] = Value::String(tag);
}

/// Decodes the index of an unencrypted backup: the header line and the entries.
pub fn read_unencrypted_index(backup_dir: &Path) -> (Value, Vec<Value>) {
    let raw = fs::read(backup_dir.join("index")).unwrap();
    let text = zstd::decode_all(&raw[..]).expect("index is zstd");
    let mut lines = text.split(|&b| b == b'\n').filter(|l| !l.is_empty());
    let header: Value = serde_json::from_slice(lines.next().expect("index header")).unwrap();
    let entries = lines.map(|l| serde_json::from_slice(l).unwrap()).collect();
    (header, entries)
}

/// Every `manifest.json` below `root`.
pub fn find_manifests(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    fn walk(p: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = fs::read_dir(p) else { return };
        for e in rd.flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                walk(&e.path(), out);
            } else if e.file_name() == "manifest.json" {
                out.push(e.path());
            }
        }
    }
    walk(root, &mut out);
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let v: Value =
            serde_json::from_str(r#"{"b":1,"a":{"d":[{"z":1,"y":"é"}],"c":null}}"#).unwrap();
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"c":null,"d":[{"y":"é","z":1}]},"b":1}"#
        );
    }
}
