//! `manifest.json`: the record that makes a backup exist (worker/FORMAT.md). Plain JSON so that
//! listing and pruning need no key, tagged so that tampering and wrong passphrases are caught.

use crate::codec::Codec;
use crate::crypto::{self, Keys};
use crate::error::{Error, Result, DAMAGED_GUIDANCE};
use serde::{Deserialize, Serialize};

/// The storage format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Whether a backup stands alone or depends on a parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Level 0.
    Full,
    /// Level n against the chain's newest backup (level n-1).
    Incremental,
    /// Level n against an older backup of the chain (`--always-level`).
    Differential,
}

/// What was backed up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// Absolute path of `--path-to-backup`.
    pub path: String,
    /// `dir` or `file`.
    pub kind: String,
}

/// Codec and level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compression {
    /// The algorithm.
    pub codec: Codec,
    /// Its level.
    pub level: i32,
}

/// Public encryption parameters (nothing here is secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encryption {
    /// Always `aes-256-cfb`.
    pub cipher: String,
    /// Always `pbkdf2-hmac-sha256`.
    pub kdf: String,
    /// PBKDF2 iteration count.
    pub iterations: u32,
    /// The 8-byte salt, hex.
    pub salt: String,
}

impl Encryption {
    /// Parameters for a new backup.
    pub fn new(iterations: u32, salt: [u8; 8]) -> Self {
        Encryption {
            cipher: "aes-256-cfb".into(),
            kdf: "pbkdf2-hmac-sha256".into(),
            iterations,
            salt: hex::encode(salt),
        }
    }

    /// Derives this backup's keys from `pass`.
    pub fn keys(&self, pass: &[u8]) -> Result<Keys> {
        if self.cipher != "aes-256-cfb" || self.kdf != "pbkdf2-hmac-sha256" {
            return Err(Error::failure(format!(
                "unsupported encryption {} with {}",
                self.cipher, self.kdf
            )));
        }
        let salt: [u8; 8] = hex::decode(&self.salt)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| Error::integrity("manifest has a malformed salt"))?;
        Ok(Keys::derive(pass, salt, self.iterations))
    }
}

/// One stored segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// Stored bytes.
    pub size: u64,
    /// Bytes of the tar stream it holds once decrypted and decompressed.
    pub raw_size: u64,
    /// Tag, hex (FORMAT.md).
    pub tag: String,
}

/// The stored index object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexRef {
    /// Stored bytes.
    pub size: u64,
    /// Tag, hex.
    pub tag: String,
}

/// Counters of a backup run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Index entries (all types).
    pub entries: u64,
    /// Regular files present (changed or not).
    pub files: u64,
    /// Bytes of file content read from the source.
    pub bytes_read: u64,
    /// Bytes written to storage (segments and index).
    pub bytes_stored: u64,
    /// Files that could not be read.
    pub unreadable: u64,
}

/// A backup's manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Storage format version.
    pub format_version: u32,
    /// This backup's timestamp id.
    pub backup_id: String,
    /// The backup it is relative to (none for level 0).
    pub parent_id: Option<String>,
    /// The level 0 of its chain.
    pub chain_id: String,
    /// Host part of the storage key.
    pub hostname: String,
    /// Name part of the storage key.
    pub backup_name: String,
    /// 0 for a full backup.
    pub level: u32,
    /// Full, incremental or differential.
    pub kind: Kind,
    /// `tar`.
    pub engine: String,
    /// `fs`.
    pub mode: String,
    /// When the run started (RFC 3339).
    pub started_at: String,
    /// When the data was complete (RFC 3339).
    pub finished_at: String,
    /// What was backed up.
    pub source: Source,
    /// How segments are compressed.
    pub compression: Compression,
    /// How they are encrypted, if they are.
    pub encryption: Option<Encryption>,
    /// The archive's segments, in order.
    pub segments: Vec<Segment>,
    /// The index object.
    pub index: IndexRef,
    /// Counters.
    pub totals: Totals,
    /// Fencing token of the lock that wrote it (fleet mode).
    pub fencing_token: Option<u64>,
    /// Writer's name and version.
    pub tool_version: String,
    /// Tag over the rest of the manifest.
    #[serde(default)]
    pub manifest_tag: String,
}

fn canonical(value: &serde_json::Value) -> Vec<u8> {
    // serde_json's default map is ordered by key, so this is the sorted, compact form.
    let mut v = value.clone();
    if let Some(obj) = v.as_object_mut() {
        obj.remove("manifest_tag");
    }
    serde_json::to_vec(&v).expect("a JSON value serializes")
}

impl Manifest {
    /// Serializes with a fresh tag under `keys` (or SHA-256 when unencrypted).
    pub fn to_json(&self, keys: Option<&Keys>) -> Vec<u8> {
        let mut m = self.clone();
        m.manifest_tag.clear();
        let value = serde_json::to_value(&m).expect("manifest serializes");
        m.manifest_tag = crypto::manifest_tag(keys, &canonical(&value));
        serde_json::to_vec_pretty(&m).expect("manifest serializes")
    }

    /// Parses a stored manifest without checking its tag (enough for listing).
    pub fn parse(bytes: &[u8], what: &str) -> Result<(Manifest, serde_json::Value)> {
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::integrity(format!("{what}: damaged manifest: {e}")))?;
        let m: Manifest = serde_json::from_value(value.clone())
            .map_err(|e| Error::integrity(format!("{what}: damaged manifest: {e}")))?;
        if m.format_version != FORMAT_VERSION {
            return Err(Error::failure(format!(
                "{what}: format version {} is not supported by this freezer-worker (reads {FORMAT_VERSION})",
                m.format_version
            )));
        }
        Ok((m, value))
    }

    /// Checks the manifest's tag; for an encrypted backup this is the passphrase check.
    ///
    /// A failure is permanent: the same passphrase against the same bytes fails again.
    pub fn verify(
        value: &serde_json::Value,
        m: &Manifest,
        keys: Option<&Keys>,
        what: &str,
    ) -> Result<()> {
        let want = crypto::manifest_tag(keys, &canonical(value));
        if crypto::tags_equal(&want, &m.manifest_tag) {
            return Ok(());
        }
        Err(if keys.is_some() {
            Error::integrity(format!(
                "{what}: wrong passphrase, or the manifest was tampered with"
            ))
            .with_guidance(
                "give the pass file (or key name) this backup was made with; if it is the right \
                 one, the manifest was changed after the backup: run verify and restore from \
                 another copy",
            )
        } else {
            Error::integrity(format!("{what}: manifest failed its integrity check"))
                .with_guidance(DAMAGED_GUIDANCE)
        })
    }
}
