//! Compression of archive chunks. Each chunk is compressed on its own (one zstd frame, gzip
//! member, bzip2 stream or xz stream) so chunks work in parallel and still concatenate into a
//! stream the stock `zstd -d`, `gzip -d`, `bzip2 -d` and `xz -d` accept.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};

/// The compression algorithm of a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// zstd: the default, fast at every level.
    Zstd,
    /// gzip, as OpenStack Freezer's default.
    Gzip,
    /// bzip2.
    Bzip2,
    /// xz (LZMA2).
    Xz,
    /// No compression.
    None,
}

impl Codec {
    /// The codec's name as written in manifests and accepted on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Zstd => "zstd",
            Codec::Gzip => "gzip",
            Codec::Bzip2 => "bzip2",
            Codec::Xz => "xz",
            Codec::None => "none",
        }
    }

    /// Compresses one chunk into a self-contained frame/member/stream.
    pub fn compress(self, level: i32, raw: &[u8]) -> Result<Vec<u8>> {
        let err =
            |e: std::io::Error| Error::failure(format!("{} compression failed: {e}", self.name()));
        match self {
            Codec::Zstd => zstd::bulk::compress(raw, level).map_err(err),
            Codec::Gzip => {
                let out = Vec::with_capacity(raw.len() / 2);
                let mut e =
                    flate2::write::GzEncoder::new(out, flate2::Compression::new(level as u32));
                e.write_all(raw).map_err(err)?;
                e.finish().map_err(err)
            }
            Codec::Bzip2 => {
                let out = Vec::with_capacity(raw.len() / 2);
                let mut e =
                    bzip2::write::BzEncoder::new(out, bzip2::Compression::new(level as u32));
                e.write_all(raw).map_err(err)?;
                e.finish().map_err(err)
            }
            Codec::Xz => {
                let out = Vec::with_capacity(raw.len() / 2);
                let mut e = liblzma::write::XzEncoder::new(out, level as u32);
                e.write_all(raw).map_err(err)?;
                e.finish().map_err(err)
            }
            Codec::None => Ok(raw.to_vec()),
        }
    }

    /// Decompresses one chunk into exactly `raw_size` bytes (from the manifest); more or less
    /// output, or undecodable input, is an integrity error.
    pub fn decompress(self, data: &[u8], raw_size: usize) -> Result<Vec<u8>> {
        let bad =
            |m: String| Error::integrity(format!("{} data does not decompress: {m}", self.name()));
        if let Codec::Zstd = self {
            let out = zstd::bulk::decompress(data, raw_size).map_err(|e| bad(e.to_string()))?;
            if out.len() != raw_size {
                return Err(bad(format!(
                    "{} bytes, the manifest says {raw_size}",
                    out.len()
                )));
            }
            return Ok(out);
        }
        let mut reader: Box<dyn Read + '_> = match self {
            Codec::Gzip => Box::new(flate2::read::MultiGzDecoder::new(data)),
            Codec::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(data)),
            Codec::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(data)),
            Codec::None | Codec::Zstd => Box::new(data),
        };
        // Exactly raw_size bytes into a buffer of that size, then prove the stream ends there.
        let mut out = vec![0u8; raw_size];
        reader
            .read_exact(&mut out)
            .map_err(|e| bad(format!("{e} (expected {raw_size} bytes)")))?;
        let mut extra = [0u8; 1];
        match reader.read(&mut extra) {
            Ok(0) => Ok(out),
            Ok(_) => Err(bad(format!(
                "more than the {raw_size} bytes the manifest says"
            ))),
            Err(e) => Err(bad(e.to_string())),
        }
    }
}

/// A per-thread compressor: keeps zstd's context between chunks instead of allocating one each time.
pub struct ChunkCompressor {
    codec: Codec,
    level: i32,
    zstd: Option<zstd::bulk::Compressor<'static>>,
}

impl ChunkCompressor {
    /// A compressor for `codec` at `level`.
    pub fn new(codec: Codec, level: i32) -> Result<Self> {
        let zstd = match codec {
            Codec::Zstd => Some(
                zstd::bulk::Compressor::new(level)
                    .map_err(|e| Error::failure(format!("zstd compressor: {e}")))?,
            ),
            _ => None,
        };
        Ok(ChunkCompressor { codec, level, zstd })
    }

    /// Compresses one chunk into a self-contained frame/member/stream.
    pub fn compress(&mut self, raw: &[u8]) -> Result<Vec<u8>> {
        match &mut self.zstd {
            Some(z) => z
                .compress(raw)
                .map_err(|e| Error::failure(format!("zstd compression failed: {e}"))),
            None => self.codec.compress(self.level, raw),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_round_trips_and_concatenates() {
        let a: Vec<u8> = (0..100_000u32).map(|i| (i % 97) as u8).collect();
        let b: Vec<u8> = b"second chunk".repeat(1000);
        for (codec, level) in [
            (Codec::Zstd, 3),
            (Codec::Gzip, 6),
            (Codec::Bzip2, 9),
            (Codec::Xz, 6),
            (Codec::None, 0),
        ] {
            let ca = codec.compress(level, &a).unwrap();
            let cb = codec.compress(level, &b).unwrap();
            assert_eq!(codec.decompress(&ca, a.len()).unwrap(), a);
            assert_eq!(codec.decompress(&cb, b.len()).unwrap(), b);
            let both = [ca, cb].concat();
            let whole = codec.decompress(&both, a.len() + b.len()).unwrap();
            assert_eq!(whole, [a.clone(), b.clone()].concat(), "{codec:?}");
        }
    }

    #[test]
    fn wrong_size_or_garbage_is_an_integrity_error() {
        let c = Codec::Zstd.compress(3, b"hello").unwrap();
        assert!(Codec::Zstd.decompress(&c, 4).is_err());
        assert!(Codec::Gzip.decompress(b"garbage", 7).is_err());
    }
}
