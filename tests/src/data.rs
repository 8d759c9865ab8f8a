//! Test data: deterministic pseudo-random bytes and files, SHA-256 of data and files, and
//! corrupting a file in place.

use sha2::{Digest, Sha256};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Deterministic pseudo-random bytes (xorshift64*), incompressible enough for the tests.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    fill_random(seed, &mut out);
    out
}

fn fill_random(seed: u64, buf: &mut [u8]) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for chunk in buf.chunks_mut(8) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

/// Writes `len` pseudo-random bytes to `path`, streaming.
pub fn write_random_file(path: &Path, seed: u64, len: u64) {
    let mut f = fs::File::create(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    let mut n = 0u64;
    while left > 0 {
        let k = left.min(buf.len() as u64) as usize;
        fill_random(
            seed.wrapping_add(n.wrapping_mul(0x1000_0001)),
            &mut buf[..k],
        );
        f.write_all(&buf[..k]).unwrap();
        left -= k as u64;
        n += 1;
    }
}

/// SHA-256 of `data` in lowercase hex, as the manifests write digests.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// SHA-256 of the file at `path` in lowercase hex, read in 1 MiB pieces.
pub fn sha256_file(path: &Path) -> String {
    let mut f = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

/// Flips all bits of the byte at `offset` of `path`.
pub fn flip_byte(path: &Path, offset: u64) {
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    b[0] ^= 0xff;
    f.write_all_at(&b, offset).unwrap();
}
