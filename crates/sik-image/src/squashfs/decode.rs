//! Decompression of SquashFS blocks (metadata, data and fragment blocks)
//! with a hard output bound.
//!
//! A block never decompresses to more than its size limit: 8 KiB for a
//! metadata block, the image's block size for a data or fragment block.
//! The output buffer is sized once and a block that does not end inside it
//! is an error, so a hostile block (a "bomb") costs at most the limit in
//! memory and time, whatever it would expand to.
//!
//! Every compressor SquashFS 4.0 defines is read, each through one
//! maintained decoder: zlib streams (`gzip`) with zlib-rs, `xz` and legacy
//! `lzma` with liblzma, `lz4` raw blocks with lz4_flex, `lzo` with
//! rust-lzo, `zstd` frames with libzstd (one context per [`Decoder`]).

use super::Compression;
use crate::{Error, Result};

/// Memory liblzma may use to decode one block: SquashFS xz and lzma
/// dictionaries are at most the block size (1 MiB), so this is ample and
/// stops a header that asks for a huge dictionary.
const XZ_MEMLIMIT: u64 = 64 << 20;

fn bad(why: impl Into<String>) -> Error {
    Error::malformed("squashfs", why)
}

fn too_big(limit: usize) -> Error {
    bad(format!("a block decompresses to more than {limit} bytes"))
}

/// Decompresses blocks with an output bound; holds one zstd context, so a
/// reader keeps one per thread.
pub struct Decoder {
    compression: Compression,
    zstd: Option<zstd::bulk::Decompressor<'static>>,
}

impl Decoder {
    /// A decoder for blocks of `compression`.
    pub fn new(compression: Compression) -> Decoder {
        Decoder {
            compression,
            zstd: None,
        }
    }

    /// Decompress `bytes` into `out` (cleared first), at most `limit` bytes;
    /// a block that holds more is an error (and leaves `out` empty). zstd
    /// decodes into `out`'s spare capacity: a buffer reused for blocks of
    /// one image keeps the capacity of one block.
    pub fn decompress(&mut self, bytes: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<()> {
        let r = self.decompress_into(bytes, out, limit);
        if r.is_err() {
            out.clear();
        }
        r
    }

    fn decompress_into(&mut self, bytes: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<()> {
        out.clear();
        match self.compression {
            Compression::Zstd => {
                if self.zstd.is_none() {
                    self.zstd = Some(zstd::bulk::Decompressor::new().map_err(Error::Stream)?);
                }
                let z = self.zstd.as_mut().expect("made above");
                out.reserve_exact(limit);
                // Writes into the spare capacity only.
                z.decompress_to_buffer(bytes, out).map_err(|e| {
                    if out.len() >= limit {
                        too_big(limit)
                    } else {
                        bad(format!("corrupt zstd block ({e})"))
                    }
                })?;
            }
            Compression::Gzip => {
                out.resize(limit, 0);
                let mut z = flate2_zlib_rs::Decompress::new(true);
                let status = z.decompress(bytes, out, flate2_zlib_rs::FlushDecompress::Finish);
                out.truncate((z.total_out() as usize).min(limit));
                match status {
                    Ok(flate2_zlib_rs::Status::StreamEnd) => {}
                    Ok(_) => return Err(too_big(limit)),
                    Err(e) => return Err(bad(format!("corrupt gzip block ({e})"))),
                }
            }
            Compression::Xz | Compression::Lzma => {
                use liblzma_static::stream::{Action, Status, Stream};
                out.resize(limit, 0);
                let mut s = if self.compression == Compression::Xz {
                    Stream::new_stream_decoder(XZ_MEMLIMIT, 0)
                } else {
                    Stream::new_lzma_decoder(XZ_MEMLIMIT)
                }
                .map_err(|e| bad(format!("{} decoder: {e}", self.compression.name())))?;
                let status = s.process(bytes, out, Action::Finish);
                out.truncate((s.total_out() as usize).min(limit));
                match status {
                    Ok(Status::StreamEnd) => {}
                    Ok(_) => return Err(too_big(limit)),
                    Err(e) => {
                        return Err(bad(format!(
                            "corrupt {} block ({e})",
                            self.compression.name()
                        )));
                    }
                }
            }
            Compression::Lz4 => {
                out.resize(limit, 0);
                match lz4_flex::block::decompress_into(bytes, out) {
                    Ok(n) => out.truncate(n),
                    Err(lz4_flex::block::DecompressError::OutputTooSmall { .. }) => {
                        return Err(too_big(limit));
                    }
                    Err(e) => return Err(bad(format!("corrupt lz4 block ({e})"))),
                }
            }
            Compression::Lzo => {
                out.resize(limit, 0);
                let (n, err) = {
                    let (got, err) = rust_lzo::LZOContext::decompress_to_slice(bytes, out);
                    (got.len(), err)
                };
                out.truncate(n);
                match err {
                    rust_lzo::LZOError::OK => {}
                    rust_lzo::LZOError::OUTPUT_OVERRUN => return Err(too_big(limit)),
                    e => return Err(bad(format!("corrupt lzo block (error {})", e as i32))),
                }
            }
        }
        if out.len() > limit {
            return Err(too_big(limit));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut z = flate2_zlib_rs::Compress::new(flate2_zlib_rs::Compression::default(), true);
        let mut out = Vec::with_capacity(data.len() + 1024);
        z.compress_vec(data, &mut out, flate2_zlib_rs::FlushCompress::Finish)
            .unwrap();
        out
    }

    fn xz(data: &[u8]) -> Vec<u8> {
        let mut s = liblzma_static::stream::Stream::new_easy_encoder(
            6,
            liblzma_static::stream::Check::Crc32,
        )
        .unwrap();
        let mut out = Vec::with_capacity(data.len() + 1024);
        s.process_vec(data, &mut out, liblzma_static::stream::Action::Finish)
            .unwrap();
        out
    }

    #[test]
    fn blocks_decompress_up_to_their_limit_and_no_further() {
        let data = vec![b'a'; 128 * 1024];
        for (c, packed) in [
            (Compression::Gzip, gzip(&data)),
            (Compression::Xz, xz(&data)),
            (Compression::Zstd, zstd::bulk::compress(&data, 3).unwrap()),
            (Compression::Lz4, lz4_flex::block::compress(&data)),
        ] {
            let mut d = Decoder::new(c);
            let mut out = Vec::new();
            d.decompress(&packed, &mut out, data.len()).unwrap();
            assert_eq!(out, data, "{c:?}");
            let e = d
                .decompress(&packed, &mut out, data.len() - 1)
                .unwrap_err()
                .to_string();
            assert!(e.contains("more than"), "{c:?}: {e}");
            assert!(out.len() < data.len(), "{c:?}");
        }
        // A 64 MiB bomb costs no more than the limit.
        let bomb = gzip(&vec![0u8; 64 << 20]);
        let mut out = Vec::new();
        let mut d = Decoder::new(Compression::Gzip);
        assert!(d.decompress(&bomb, &mut out, 128 * 1024).is_err());
        assert!(out.capacity() <= 128 * 1024);
        let mut d = Decoder::new(Compression::Xz);
        assert!(
            d.decompress(&xz(&vec![0u8; 1 << 20]), &mut out, 8192)
                .is_err()
        );
        assert!(out.capacity() <= 128 * 1024);
    }

    #[test]
    fn garbage_is_an_error_for_every_compressor() {
        for c in [
            Compression::Gzip,
            Compression::Lzma,
            Compression::Lzo,
            Compression::Xz,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut out = Vec::new();
            assert!(
                Decoder::new(c)
                    .decompress(&[0xff; 64], &mut out, 8192)
                    .is_err(),
                "{c:?}"
            );
        }
    }
}
