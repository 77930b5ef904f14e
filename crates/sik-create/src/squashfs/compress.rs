//! Block compression for the SquashFS writer: one [`Codec`] per thread, so
//! compressor contexts are reused between blocks.

use super::Compressor;

/// Compresses blocks with one compressor at one level.
///
/// [`Codec::compress`] returns `None` when the compressed form would not be
/// smaller than the input; the caller then stores the block uncompressed
/// (data block flag bit 24, metadata header bit 15), as mksquashfs does.
pub(crate) struct Codec {
    kind: Compressor,
    level: i32,
    block_size: u32,
    zstd: Option<zstd::bulk::Compressor<'static>>,
    zlib: Option<flate2::Compress>,
}

impl Codec {
    /// A codec for `kind` at the (already validated) `level`.
    pub(crate) fn new(kind: Compressor, level: i32, block_size: u32) -> Codec {
        let zstd = match kind {
            Compressor::Zstd => zstd::bulk::Compressor::new(level).ok(),
            _ => None,
        };
        let zlib = match kind {
            Compressor::Gzip => Some(flate2::Compress::new(
                flate2::Compression::new(level.clamp(0, 9) as u32),
                true,
            )),
            _ => None,
        };
        Codec {
            kind,
            level,
            block_size,
            zstd,
            zlib,
        }
    }

    /// The compressed form of `input` when it is strictly smaller, else `None`.
    pub(crate) fn compress(&mut self, input: &[u8]) -> Option<Vec<u8>> {
        if input.is_empty() {
            return None;
        }
        let out = match self.kind {
            Compressor::Zstd => self.zstd_compress(input)?,
            Compressor::Gzip => self.zlib_compress(input)?,
            Compressor::Xz => self.xz_compress(input)?,
            Compressor::Lz4 => lz4_flex::block::compress(input),
        };
        (out.len() < input.len()).then_some(out)
    }

    fn zstd_compress(&mut self, input: &[u8]) -> Option<Vec<u8>> {
        if self.zstd.is_none() {
            self.zstd = zstd::bulk::Compressor::new(self.level).ok();
        }
        let c = self.zstd.as_mut()?;
        let mut out = Vec::with_capacity(input.len());
        match c.compress_to_buffer(input, &mut out) {
            Ok(_) => Some(out),
            Err(_) => None,
        }
    }

    fn zlib_compress(&mut self, input: &[u8]) -> Option<Vec<u8>> {
        let c = self.zlib.as_mut()?;
        c.reset();
        let mut out = Vec::with_capacity(input.len());
        match c.compress_vec(input, &mut out, flate2::FlushCompress::Finish) {
            Ok(flate2::Status::StreamEnd) => Some(out),
            _ => None,
        }
    }

    fn xz_compress(&mut self, input: &[u8]) -> Option<Vec<u8>> {
        use liblzma::stream::{Action, Check, Filters, LzmaOptions, Status, Stream};
        let mut opts = LzmaOptions::new_preset(self.level.clamp(0, 9) as u32).ok()?;
        opts.dict_size(self.block_size);
        let mut filters = Filters::new();
        filters.lzma2(&opts);
        let mut stream = Stream::new_stream_encoder(&filters, Check::Crc32).ok()?;
        let mut out = Vec::with_capacity(input.len());
        let mut consumed = 0usize;
        loop {
            let before_in = stream.total_in() as usize;
            let status = stream
                .process_vec(&input[consumed..], &mut out, Action::Finish)
                .ok()?;
            consumed += stream.total_in() as usize - before_in;
            match status {
                Status::StreamEnd => return Some(out),
                _ if out.len() >= out.capacity() => return None,
                _ => {}
            }
        }
    }
}
