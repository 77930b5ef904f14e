//! Decompression with a hard output bound, for every SquashFS block the
//! runtime reads (metadata, data and fragment blocks, when mounting and
//! when extracting).
//!
//! A block never decompresses to more than its size limit: the data block
//! size of the image, or 8 KiB for a metadata block. backhand's own gzip and
//! xz decoders grow their output until it fits (up to 4 MiB a block), so a
//! hostile block (a "bomb") could make each read cost megabytes of memory
//! and time. Here the output buffer is sized once and a block that does not
//! end inside it is an error. backhand hands every decompression the limit
//! as the spare capacity of the output buffer (its documented contract for
//! custom compressors), so [`Bounded`] plugs into its readers through
//! [`backhand::kind::Kind::new_v4`].

use backhand::BackhandError;
use backhand::compression::{CompressionAction, Compressor, DefaultCompressor};
use backhand::kind::Kind;

/// Memory liblzma may use to decode one block: SquashFS xz dictionaries are
/// at most the block size (1 MiB), so this is ample and stops a header that
/// asks for a huge dictionary.
const XZ_MEMLIMIT: u64 = 64 << 20;

/// Decompress `bytes` (compressed with `compressor`) into `out`, appending at
/// most `limit` bytes; more is an error.
pub fn decompress(
    compressor: Compressor,
    bytes: &[u8],
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<(), String> {
    let start = out.len();
    match compressor {
        Compressor::Gzip => {
            out.resize(start + limit, 0);
            let mut z = flate2_zlib_rs::Decompress::new(true);
            let status = z.decompress(
                bytes,
                &mut out[start..],
                flate2_zlib_rs::FlushDecompress::Finish,
            );
            let n = z.total_out() as usize;
            out.truncate(start + n.min(limit));
            match status {
                Ok(flate2_zlib_rs::Status::StreamEnd) => {}
                Ok(_) => return Err(too_big(limit)),
                Err(e) => return Err(format!("corrupt gzip block: {e}")),
            }
        }
        Compressor::Xz => {
            out.resize(start + limit, 0);
            let mut s = liblzma_static::stream::Stream::new_stream_decoder(XZ_MEMLIMIT, 0)
                .map_err(|e| format!("xz: {e}"))?;
            let status = s.process(
                bytes,
                &mut out[start..],
                liblzma_static::stream::Action::Finish,
            );
            let n = s.total_out() as usize;
            out.truncate(start + n.min(limit));
            match status {
                Ok(liblzma_static::stream::Status::StreamEnd) => {}
                Ok(_) => return Err(too_big(limit)),
                Err(e) => return Err(format!("corrupt xz block: {e}")),
            }
        }
        Compressor::Uncompressed => {
            if bytes.len() > limit {
                return Err(too_big(limit));
            }
            out.extend_from_slice(bytes);
        }
        other => {
            // zstd, lz4 and lzo in backhand decode into the spare capacity
            // only: reserve exactly the limit.
            let mut buf = Vec::with_capacity(limit);
            DefaultCompressor
                .decompress(bytes, &mut buf, other)
                .map_err(|e| format!("corrupt {other:?} block: {e}"))?;
            if buf.len() > limit {
                return Err(too_big(limit));
            }
            out.extend_from_slice(&buf);
        }
    }
    Ok(())
}

fn too_big(limit: usize) -> String {
    format!("a block decompresses to more than {limit} bytes")
}

/// backhand's decompression with the bound of [`decompress`]; the limit is
/// the output buffer's spare capacity (the block size backhand reserved).
pub struct Bounded;

/// The one instance handed to backhand.
pub static BOUNDED: Bounded = Bounded;

/// A SquashFS 4.0 little-endian kind whose blocks decompress through
/// [`Bounded`].
pub fn kind() -> Kind {
    Kind::new_v4(&BOUNDED)
}

impl CompressionAction for Bounded {
    type Error = BackhandError;
    type Compressor = Compressor;
    type FilesystemCompressor = backhand::FilesystemCompressor;
    type SuperBlock = backhand::SuperBlock;

    fn decompress(
        &self,
        bytes: &[u8],
        out: &mut Vec<u8>,
        compressor: Compressor,
    ) -> Result<(), BackhandError> {
        let limit = out.capacity() - out.len();
        decompress(compressor, bytes, out, limit)
            .map_err(|_| BackhandError::CorruptedOrInvalidSquashfs)
    }

    fn compress(
        &self,
        _bytes: &[u8],
        _fc: backhand::FilesystemCompressor,
        _block_size: u32,
    ) -> Result<Vec<u8>, BackhandError> {
        Err(BackhandError::CorruptedOrInvalidSquashfs)
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
            (Compressor::Gzip, gzip(&data)),
            (Compressor::Xz, xz(&data)),
            (Compressor::Zstd, zstd::bulk::compress(&data, 3).unwrap()),
            (Compressor::Uncompressed, data.clone()),
        ] {
            let mut out = Vec::new();
            decompress(c, &packed, &mut out, data.len()).unwrap();
            assert_eq!(out, data, "{c:?}");
            let mut out = Vec::new();
            let e = decompress(c, &packed, &mut out, data.len() - 1).unwrap_err();
            assert!(
                e.contains("more than") || c == Compressor::Zstd,
                "{c:?}: {e}"
            );
            assert!(out.len() < data.len(), "{c:?}");
        }
        // A 64 MiB bomb costs no more than the limit.
        let bomb = gzip(&vec![0u8; 64 << 20]);
        let mut out = Vec::new();
        assert!(decompress(Compressor::Gzip, &bomb, &mut out, 128 * 1024).is_err());
        assert!(out.capacity() <= 128 * 1024);
        // Through backhand's interface the limit is the spare capacity.
        let mut out = Vec::with_capacity(128 * 1024);
        assert!(
            Bounded
                .decompress(&xz(&vec![0u8; 1 << 20]), &mut out, Compressor::Xz)
                .is_err()
        );
    }
}
