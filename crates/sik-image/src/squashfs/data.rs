//! The data of a regular file: its blocks read with positioned reads and
//! decompressed one at a time, its tail cut from a fragment block.
//!
//! Memory is one block per reader plus a small shared cache of fragment
//! blocks ([`FragmentCache`]), whatever the file or image size. Every block
//! must decompress to exactly its share of the file.

use std::sync::{Arc, Mutex};

use super::tables::{BLOCK_UNCOMPRESSED, Decoder, FileData, Image, Source};
use crate::{Error, Result};

/// Fragment blocks kept by a [`FragmentCache`].
const FRAGMENT_SLOTS: usize = 8;

/// A few decompressed fragment blocks shared by the threads reading one
/// image: small files of one directory share a fragment block.
#[derive(Default)]
pub struct FragmentCache {
    slots: Mutex<Vec<(u32, Arc<Vec<u8>>)>>,
}

/// Buffers of one reading thread.
pub struct DataBuffers {
    decoder: Decoder,
    raw: Vec<u8>,
    out: Vec<u8>,
}

impl DataBuffers {
    /// Buffers for reading `image`.
    pub fn new<S: Source>(image: &Image<S>) -> DataBuffers {
        DataBuffers {
            decoder: Decoder::new(image.layout.compressor),
            raw: Vec::new(),
            out: Vec::new(),
        }
    }
}

fn bad(why: impl Into<String>) -> Error {
    Error::malformed("squashfs", why)
}

impl<S: Source> Image<S> {
    /// Stream the data of `file` into `sink`, block by block; returns the
    /// bytes handed to it (the file's size).
    pub fn read_file(
        &self,
        file: &FileData,
        bufs: &mut DataBuffers,
        frags: &FragmentCache,
        sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<u64> {
        let bs = self.layout.block_size;
        let mut pos = file.blocks_start;
        let mut left = file.size;
        for &word in &file.blocks {
            let len = left.min(u64::from(bs)) as usize;
            let stored = word & !BLOCK_UNCOMPRESSED;
            if stored == 0 {
                bufs.out.clear();
                bufs.out.resize(len, 0);
            } else {
                if stored > bs {
                    return Err(bad(format!(
                        "a data block of {stored} bytes (block size {bs})"
                    )));
                }
                bufs.raw.resize(stored as usize, 0);
                self.read_data(&mut bufs.raw, pos)?;
                pos += u64::from(stored);
                if word & BLOCK_UNCOMPRESSED != 0 {
                    std::mem::swap(&mut bufs.raw, &mut bufs.out);
                } else {
                    bufs.decoder
                        .decompress(&bufs.raw, &mut bufs.out, bs as usize)?;
                }
            }
            if bufs.out.len() != len {
                return Err(bad(format!(
                    "a data block holds {} bytes where the file needs {len}",
                    bufs.out.len()
                )));
            }
            sink(&bufs.out).map_err(Error::Stream)?;
            left -= len as u64;
        }
        if left > 0 {
            let Some((index, offset)) = file.fragment else {
                return Err(bad("a file is longer than its blocks"));
            };
            let block = self.fragment_block(index, bufs, frags)?;
            let tail = (offset as usize)
                .checked_add(left as usize)
                .and_then(|end| block.get(offset as usize..end))
                .ok_or_else(|| bad("a file's tail lies outside its fragment block"))?;
            sink(tail).map_err(Error::Stream)?;
        }
        Ok(file.size)
    }

    /// The decompressed fragment block `index`, from the cache when there.
    fn fragment_block(
        &self,
        index: u32,
        bufs: &mut DataBuffers,
        frags: &FragmentCache,
    ) -> Result<Arc<Vec<u8>>> {
        {
            let slots = frags.slots.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((_, b)) = slots.iter().find(|(i, _)| *i == index) {
                return Ok(b.clone());
            }
        }
        let bs = self.layout.block_size;
        let (start, word) = self.fragment(index)?;
        let stored = word & !BLOCK_UNCOMPRESSED;
        if stored > bs {
            return Err(bad(format!(
                "a fragment block of {stored} bytes (block size {bs})"
            )));
        }
        bufs.raw.resize(stored as usize, 0);
        self.read_data(&mut bufs.raw, start)?;
        let mut out = Vec::new();
        if word & BLOCK_UNCOMPRESSED != 0 {
            out.extend_from_slice(&bufs.raw);
        } else {
            bufs.decoder.decompress(&bufs.raw, &mut out, bs as usize)?;
        }
        let block = Arc::new(out);
        let mut slots = frags.slots.lock().unwrap_or_else(|p| p.into_inner());
        if slots.len() >= FRAGMENT_SLOTS {
            slots.remove(0);
        }
        slots.push((index, block.clone()));
        Ok(block)
    }
}
