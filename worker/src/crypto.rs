//! Client-side encryption compatible with `openssl enc -aes-256-cfb -pbkdf2 -md sha256`, plus the
//! tags that authenticate segments, the index and the manifest (worker/FORMAT.md, "Tags").

use crate::error::{Error, Result};
use aes::Aes256;
use cfb_mode::cipher::KeyIvInit;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use std::path::Path;

// The whole-buffer Encryptor/Decryptor run the block cipher through one backend call per buffer;
// the per-block Buf* types re-enter the (VAES) backend for every 16 bytes and cost 3x more.
type CfbEnc = cfb_mode::Encryptor<Aes256>;
type CfbDec = cfb_mode::Decryptor<Aes256>;
type HmacSha256 = Hmac<Sha256>;

/// OpenSSL's salted-stream magic.
pub const MAGIC: &[u8; 8] = b"Salted__";
/// Length of the `Salted__` header plus salt at the start of segment 0.
pub const HEADER_LEN: usize = 16;
/// PBKDF2 iterations for new backups unless `FREEZER_KDF_ITERATIONS` says otherwise: ten times
/// `openssl enc -pbkdf2`'s own default. An incremental backup runs two derivations (its own and
/// its parent's, to read the parent's index), so this is a trade-off against the incremental's
/// latency (about 35 ms of one core each here); every manifest records its count.
pub const DEFAULT_ITERATIONS: u32 = 100_000;

/// PBKDF2 iterations for a new backup: the default, or `FREEZER_KDF_ITERATIONS`.
pub fn iterations_for_new_backup() -> Result<u32> {
    match std::env::var("FREEZER_KDF_ITERATIONS") {
        Ok(v) => v.parse::<u32>().ok().filter(|n| *n >= 1).ok_or_else(|| {
            Error::usage(format!(
                "FREEZER_KDF_ITERATIONS={v:?} is not a positive integer"
            ))
        }),
        Err(_) => Ok(DEFAULT_ITERATIONS),
    }
}

/// Reads a passphrase the way `openssl -pass file:` does: the first line, without its `\n`.
pub fn read_pass_file(path: &Path) -> Result<Vec<u8>> {
    let data = std::fs::read(path)
        .map_err(|e| Error::usage(format!("cannot read pass file {}: {e}", path.display())))?;
    let line = data.split(|b| *b == b'\n').next().unwrap_or(&[]).to_vec();
    if line.is_empty() {
        return Err(Error::usage(format!(
            "pass file {} holds an empty passphrase",
            path.display()
        )));
    }
    Ok(line)
}

/// A fresh random 8-byte salt.
pub fn random_salt() -> [u8; 8] {
    let mut salt = [0u8; 8];
    getrandom::fill(&mut salt).expect("the OS random source is available");
    salt
}

/// The key material of one encrypted backup, derived once from passphrase and salt.
#[derive(Clone)]
pub struct Keys {
    key: [u8; 32],
    iv: [u8; 16],
    mac_key: [u8; 32],
    salt: [u8; 8],
}

impl Keys {
    /// Runs PBKDF2-HMAC-SHA256 and splits its 80 bytes into key, IV and MAC key.
    pub fn derive(pass: &[u8], salt: [u8; 8], iterations: u32) -> Keys {
        let mut out = [0u8; 80];
        pbkdf2::pbkdf2_hmac::<Sha256>(pass, &salt, iterations, &mut out);
        let mut k = Keys {
            key: [0; 32],
            iv: [0; 16],
            mac_key: [0; 32],
            salt,
        };
        k.key.copy_from_slice(&out[..32]);
        k.iv.copy_from_slice(&out[32..48]);
        k.mac_key.copy_from_slice(&out[48..80]);
        k
    }

    /// The salt these keys were derived with.
    pub fn salt(&self) -> [u8; 8] {
        self.salt
    }

    /// HMAC-SHA256 under the MAC key over the concatenation of `parts`.
    pub fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut m = <HmacSha256 as KeyInit>::new_from_slice(&self.mac_key).expect("any key length");
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }

    fn index_cipher(&self) -> ([u8; 32], [u8; 16]) {
        let key = self.mac(&[b"freezer-index-key-v1"]);
        let ivf = self.mac(&[b"freezer-index-iv-v1"]);
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&ivf[..16]);
        (key, iv)
    }

    /// Encrypts the index in place under its own key and IV.
    pub fn encrypt_index(&self, data: &mut [u8]) {
        let (key, iv) = self.index_cipher();
        CfbEnc::new(&key.into(), &iv.into()).encrypt(data);
    }

    /// Decrypts the index in place.
    pub fn decrypt_index(&self, data: &mut [u8]) {
        let (key, iv) = self.index_cipher();
        CfbDec::new(&key.into(), &iv.into()).decrypt(data);
    }
}

/// Keys derived on a background thread: started before they are needed, waited for where they are
/// first used, so the slow KDF overlaps the walk instead of delaying it.
pub struct PendingKeys {
    keys: std::sync::OnceLock<Keys>,
    handle: std::sync::Mutex<Option<std::thread::JoinHandle<Keys>>>,
}

impl PendingKeys {
    /// Starts deriving keys for `pass` and `salt`.
    pub fn spawn(pass: Vec<u8>, salt: [u8; 8], iterations: u32) -> std::sync::Arc<Self> {
        let handle = std::thread::spawn(move || Keys::derive(&pass, salt, iterations));
        std::sync::Arc::new(PendingKeys {
            keys: std::sync::OnceLock::new(),
            handle: std::sync::Mutex::new(Some(handle)),
        })
    }

    /// The keys, waiting for the derivation if it is still running.
    pub fn get(&self) -> &Keys {
        self.keys.get_or_init(|| {
            let handle = self
                .handle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .expect("the derivation is joined once, under the OnceLock");
            handle.join().expect("key derivation does not panic")
        })
    }
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// Constant-time-enough comparison of two hex tags (both are public once stored).
pub fn tags_equal(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The tag of segment `k` (see FORMAT.md): HMAC binding position and CFB chain when encrypted,
/// plain SHA-256 otherwise.
pub fn segment_tag(keys: Option<&Keys>, k: u64, chain: &[u8], segment: &[u8]) -> String {
    match keys {
        Some(keys) => hex::encode(keys.mac(&[
            b"freezer-segment-v1",
            &k.to_be_bytes(),
            &(chain.len() as u64).to_be_bytes(),
            chain,
            segment,
        ])),
        None => sha256_hex(&[segment]),
    }
}

/// The tag of the index object.
pub fn index_tag(keys: Option<&Keys>, index: &[u8]) -> String {
    match keys {
        Some(keys) => hex::encode(keys.mac(&[b"freezer-index-v1", index])),
        None => sha256_hex(&[index]),
    }
}

/// The tag of a manifest's canonical JSON.
pub fn manifest_tag(keys: Option<&Keys>, canonical: &[u8]) -> String {
    match keys {
        Some(keys) => hex::encode(keys.mac(&[b"freezer-manifest-v1", canonical])),
        None => sha256_hex(&[canonical]),
    }
}

/// Ciphertext offsets of the chain that CFB needs to resume at ciphertext offset `o`.
pub fn chain_range(o: u64) -> std::ops::Range<u64> {
    let j = o / 16;
    (j * 16).saturating_sub(16)..o
}

/// The keystream block that starts at a block boundary after ciphertext block `prev`.
fn keystream(keys: &Keys, prev: &[u8; 16]) -> [u8; 16] {
    use aes::cipher::{BlockCipherEncrypt, KeyInit as _};
    let cipher = Aes256::new(&keys.key.into());
    let mut block = (*prev).into();
    cipher.encrypt_block(&mut block);
    block.into()
}

/// Encrypts the archive as one CFB stream cut into segments, remembering the tail of the
/// ciphertext so each segment's tag can bind the chain that decrypting it needs.
pub struct SegmentEncryptor {
    keys: Keys,
    /// Ciphertext bytes produced so far (the header excluded).
    offset: u64,
    /// The last up to 32 ciphertext bytes, ending at `offset`.
    tail: Vec<u8>,
}

impl SegmentEncryptor {
    /// Starts a stream under `keys`.
    pub fn new(keys: Keys) -> Self {
        SegmentEncryptor {
            keys,
            offset: 0,
            tail: Vec::new(),
        }
    }

    /// The ciphertext block before the block that holds stream offset `at` (the IV for block 0).
    fn block_before(&self, at: u64) -> [u8; 16] {
        let start = (at / 16 * 16).checked_sub(16);
        match start {
            None => self.keys.iv,
            Some(start) => {
                let from = self.tail.len() - (self.offset - start) as usize;
                self.tail[from..from + 16].try_into().expect("16 bytes")
            }
        }
    }

    fn push(&mut self, ct: &[u8]) {
        self.offset += ct.len() as u64;
        self.tail
            .extend_from_slice(&ct[ct.len().saturating_sub(32)..]);
        if self.tail.len() > 32 {
            self.tail.drain(..self.tail.len() - 32);
        }
    }

    /// Encrypts the next bytes of the stream in place.
    fn encrypt(&mut self, data: &mut [u8]) {
        let r = (self.offset % 16) as usize;
        let mut i = 0;
        if r != 0 {
            // Finish the block already begun: XOR with the rest of its keystream.
            let ks = keystream(&self.keys, &self.block_before(self.offset));
            i = (16 - r).min(data.len());
            for (d, k) in data[..i].iter_mut().zip(&ks[r..]) {
                *d ^= k;
            }
            let head = data[..i].to_vec();
            self.push(&head);
        }
        if i < data.len() {
            let iv = self.block_before(self.offset);
            CfbEnc::new(&self.keys.key.into(), &iv.into()).encrypt(&mut data[i..]);
            self.push(&data[i..]);
        }
    }

    /// Encrypts segment `k` (`plain` is its compressed bytes, consumed) and returns the stored
    /// bytes and their tag. Segments must be given in order.
    pub fn seal(&mut self, k: u64, mut plain: Vec<u8>) -> (Vec<u8>, String) {
        let range = chain_range(self.offset);
        let chain_len = (range.end - range.start) as usize;
        let chain = self.tail[self.tail.len() - chain_len..].to_vec();
        self.encrypt(&mut plain);
        let stored = if k == 0 {
            let mut s = Vec::with_capacity(HEADER_LEN + plain.len());
            s.extend_from_slice(MAGIC);
            s.extend_from_slice(&self.keys.salt);
            s.extend_from_slice(&plain);
            s
        } else {
            plain
        };
        let tag = segment_tag(Some(&self.keys), k, &chain, &stored);
        (stored, tag)
    }
}

/// Decrypts segment `k`, already verified against its tag, given the chain bytes that precede it
/// (ciphertext `chain_range(o)` where `o` is the segment's ciphertext offset). Returns plaintext.
pub fn open_segment(keys: &Keys, k: u64, o: u64, chain: &[u8], stored: Vec<u8>) -> Result<Vec<u8>> {
    let mut data = stored;
    if k == 0 {
        if data.len() < HEADER_LEN || &data[..8] != MAGIC || data[8..16] != keys.salt {
            return Err(Error::integrity(
                "segment 0 does not start with the expected salt header",
            ));
        }
        data.drain(..HEADER_LEN);
    }
    let r = (o % 16) as usize;
    let (prev, partial): ([u8; 16], &[u8]) = if o < 16 {
        (keys.iv, chain)
    } else {
        (
            chain[..16].try_into().expect("chain holds a block"),
            &chain[16..],
        )
    };
    let mut i = 0;
    let mut block = [0u8; 16];
    let mut iv = prev;
    if r != 0 {
        // The segment starts inside a block: its keystream comes from the block before.
        let ks = keystream(keys, &prev);
        i = (16 - r).min(data.len());
        block[..r].copy_from_slice(partial);
        block[r..r + i].copy_from_slice(&data[..i]);
        for (d, k) in data[..i].iter_mut().zip(&ks[r..]) {
            *d ^= k;
        }
        iv = block;
    }
    if i < data.len() {
        CfbDec::new(&keys.key.into(), &iv.into()).decrypt(&mut data[i..]);
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_decrypt_independently_from_their_chain() {
        let keys = Keys::derive(b"pass", [7; 8], 10);
        let plain: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        let cuts = [0usize, 3, 20, 21, 37, 38, 1000, 1013, 4999, 5000];
        let mut enc = SegmentEncryptor::new(keys.clone());
        let mut stored = Vec::new();
        for (k, w) in cuts.windows(2).enumerate() {
            stored.push(enc.seal(k as u64, plain[w[0]..w[1]].to_vec()).0);
        }
        let stream: Vec<u8> = stored.concat();
        let ct = &stream[HEADER_LEN..];
        for (k, w) in cuts.windows(2).enumerate() {
            let o = w[0] as u64;
            let r = chain_range(o);
            let chain = &ct[r.start as usize..r.end as usize];
            let out = open_segment(&keys, k as u64, o, chain, stored[k].clone()).unwrap();
            assert_eq!(out, &plain[w[0]..w[1]], "segment {k}");
        }
        // The whole stream is one CFB stream.
        let mut all = ct.to_vec();
        cfb_mode::BufDecryptor::<Aes256>::new(&keys.key.into(), &keys.iv.into()).decrypt(&mut all);
        assert_eq!(all, plain);
    }

    #[test]
    fn pass_file_takes_first_line_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, b"secret words\nsecond\n").unwrap();
        assert_eq!(read_pass_file(&p).unwrap(), b"secret words");
        std::fs::write(&p, b"\n").unwrap();
        assert!(read_pass_file(&p).is_err());
    }
}
