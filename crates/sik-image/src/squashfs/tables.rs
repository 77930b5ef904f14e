//! The metadata of a SquashFS 4.0 image read on demand: metadata blocks,
//! the id and fragment tables, inodes and directory listings.
//!
//! Nothing here holds the whole inode or directory table: an inode or a
//! directory listing is read when it is asked for, through a small cache of
//! decompressed metadata blocks ([`MetaCache`]). Every count and length read
//! from the image is checked against the table it lives in before anything
//! is allocated for it, and every block decompresses to at most its size
//! limit (8 KiB for metadata, the block size for data).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::Arc;

pub use super::decode::Decoder;
use super::{Compression, SUPERBLOCK_LEN};
use crate::{Error, Result};

/// Uncompressed size of a metadata block.
pub const METADATA_LEN: usize = 8192;
/// A fragment index meaning "no fragment".
const NO_FRAGMENT: u32 = u32::MAX;
/// The bit of a data block size word meaning "stored uncompressed".
pub const BLOCK_UNCOMPRESSED: u32 = 1 << 24;
/// The bit of a metadata block header meaning "stored uncompressed".
const META_UNCOMPRESSED: u16 = 1 << 15;

/// Where image bytes come from: positioned reads, so several threads read
/// one image without sharing a file position.
pub trait Source: Sync {
    /// Fill `buf` from `offset`; a short file is an error.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl Source for std::fs::File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }
}

impl Source for [u8] {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        match start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
        {
            Some(s) => {
                buf.copy_from_slice(s);
                Ok(())
            }
            None => Err(io::ErrorKind::UnexpectedEof.into()),
        }
    }
}

impl Source for Vec<u8> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.as_slice().read_exact_at(buf, offset)
    }
}

fn bad(why: impl Into<String>) -> Error {
    Error::malformed("squashfs", why)
}

fn read_at<S: Source + ?Sized>(src: &S, buf: &mut [u8], offset: u64, what: &str) -> Result<()> {
    src.read_exact_at(buf, offset).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            bad(format!("the file ends inside the {what} (truncated?)"))
        } else {
            Error::Stream(e)
        }
    })
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"))
}

/// The superblock fields the tables are found by.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// Data block size.
    pub block_size: u32,
    /// Compressor of every block.
    pub compressor: Compression,
    /// Number of inodes.
    pub inode_count: u32,
    /// Reference of the root directory inode.
    pub root_inode: u64,
    /// Bytes used by the filesystem.
    pub bytes_used: u64,
    /// Start of the inode table.
    pub inode_table: u64,
    /// Start of the directory table.
    pub dir_table: u64,
    /// Fragment table index.
    pub frag_table: u64,
    /// Fragment count.
    pub frag_count: u32,
    /// Id table index.
    pub id_table: u64,
    /// Id count.
    pub id_count: u16,
}

/// An open image: where it starts in its source, its layout, and the id
/// and fragment tables (small: 4 bytes per owner id, 16 per fragment block).
pub struct Image<S: Source> {
    src: S,
    base: u64,
    /// The superblock fields.
    pub layout: Layout,
    ids: Vec<u32>,
    fragments: Vec<(u64, u32)>,
}

/// Type, permissions, owner, time and number of an inode.
#[derive(Debug, Clone)]
pub struct Inode {
    /// What the inode is.
    pub kind: InodeKind,
    /// Permission bits (with setuid, setgid, sticky).
    pub mode: u16,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Modification time.
    pub mtime: u32,
    /// Link count.
    pub nlink: u32,
    /// Whether the inode is an extended one (only these carry hard links of files).
    pub extended: bool,
}

/// The type-specific part of an inode.
#[derive(Debug, Clone)]
pub enum InodeKind {
    /// A directory: where its listing starts and how long it is.
    Dir(DirRef),
    /// A regular file.
    File(FileData),
    /// A symbolic link and its target.
    Symlink(Vec<u8>),
    /// A block device (old-style device number).
    Block(u32),
    /// A character device.
    Char(u32),
    /// A named pipe.
    Fifo,
    /// A socket.
    Socket,
}

impl InodeKind {
    /// The basic inode type number (1–7) the directory entry carries.
    pub fn basic_type(&self) -> u16 {
        match self {
            InodeKind::Dir(_) => 1,
            InodeKind::File(_) => 2,
            InodeKind::Symlink(_) => 3,
            InodeKind::Block(_) => 4,
            InodeKind::Char(_) => 5,
            InodeKind::Fifo => 6,
            InodeKind::Socket => 7,
        }
    }
}

/// Where a directory's listing is.
#[derive(Debug, Clone, Copy)]
pub struct DirRef {
    /// Metadata block of the listing, relative to the directory table.
    pub start: u32,
    /// Offset in that block.
    pub offset: u16,
    /// Listing length plus 3 (SquashFS counts `.` and `..`).
    pub size: u32,
}

/// Where a regular file's data is.
#[derive(Debug, Clone)]
pub struct FileData {
    /// File length.
    pub size: u64,
    /// Position of the first data block (from the start of the image).
    pub blocks_start: u64,
    /// Size word of every full data block (0: sparse).
    pub blocks: Vec<u32>,
    /// Fragment block index and offset of the tail, if any.
    pub fragment: Option<(u32, u32)>,
}

/// One entry of a directory listing.
#[derive(Debug, Clone)]
pub struct DirEntry {
    /// The name as stored (checked to be a plain name by [`Image::read_dir`]).
    pub name: Vec<u8>,
    /// Reference of its inode.
    pub inode: u64,
    /// Basic type (1–7) from the entry.
    pub kind: u16,
}

/// Decompressed metadata blocks kept for reuse (a bounded number; the
/// oldest is dropped first). One per reading thread.
pub struct MetaCache {
    blocks: HashMap<u64, (Arc<Vec<u8>>, u64)>,
    order: VecDeque<u64>,
    decoder: Decoder,
}

/// Blocks a [`MetaCache`] keeps: 2 MiB.
const META_CACHE_BLOCKS: usize = 256;

impl<S: Source> Image<S> {
    /// Open the image starting at `base` in `src`: the superblock, the id
    /// and the fragment tables.
    pub fn open(src: S, base: u64) -> Result<Image<S>> {
        let mut raw = [0u8; SUPERBLOCK_LEN];
        read_at(&src, &mut raw, base, "superblock")?;
        super::check_superblock_fields(&raw)?;
        // check_superblock_fields accepts known compressor ids only.
        let compressor = Compression::from_id(u16_at(&raw, 20)).unwrap_or(Compression::Zstd);
        let layout = Layout {
            block_size: u32_at(&raw, 12),
            compressor,
            inode_count: u32_at(&raw, 4),
            root_inode: u64_at(&raw, 32),
            bytes_used: u64_at(&raw, 40),
            inode_table: u64_at(&raw, 64),
            dir_table: u64_at(&raw, 72),
            frag_table: u64_at(&raw, 80),
            frag_count: u32_at(&raw, 16),
            id_table: u64_at(&raw, 48),
            id_count: u16_at(&raw, 26),
        };
        let l = &layout;
        if l.bytes_used < SUPERBLOCK_LEN as u64
            || l.inode_table < SUPERBLOCK_LEN as u64
            || l.inode_table >= l.dir_table
            || l.dir_table >= l.bytes_used
        {
            return Err(bad(
                "the inode and directory tables lie outside the image or out of order",
            ));
        }
        let mut image = Image {
            src,
            base,
            layout,
            ids: Vec::new(),
            fragments: Vec::new(),
        };
        let mut cache = MetaCache::new(compressor);
        let ids = image.read_table(&mut cache, l.id_table, u64::from(l.id_count), 4, "id table")?;
        image.ids = ids.chunks_exact(4).map(|c| u32_at(c, 0)).collect();
        let frag_count = if l.frag_table == super::NOT_SET {
            0
        } else {
            l.frag_count
        };
        let frags = image.read_table(
            &mut cache,
            l.frag_table,
            u64::from(frag_count),
            16,
            "fragment table",
        )?;
        image.fragments = frags
            .chunks_exact(16)
            .map(|c| (u64_at(c, 0), u32_at(c, 8)))
            .collect();
        Ok(image)
    }

    /// A fresh metadata cache for reading this image.
    pub fn meta_cache(&self) -> MetaCache {
        MetaCache::new(self.layout.compressor)
    }

    /// Read `count` records of `size` bytes of a table whose index of
    /// metadata block positions is at `index`.
    fn read_table(
        &self,
        cache: &mut MetaCache,
        index: u64,
        count: u64,
        size: u64,
        what: &str,
    ) -> Result<Vec<u8>> {
        let total = count * size;
        if total == 0 {
            return Ok(Vec::new());
        }
        let blocks = total.div_ceil(METADATA_LEN as u64);
        if index
            .checked_add(blocks * 8)
            .is_none_or(|end| end > self.layout.bytes_used)
        {
            return Err(bad(format!("the {what} lies outside the image")));
        }
        let mut idx = vec![0u8; (blocks * 8) as usize];
        read_at(&self.src, &mut idx, self.base + index, what)?;
        let mut out = Vec::with_capacity(total.min(1 << 20) as usize);
        for b in idx.chunks_exact(8) {
            let (data, _) = cache.block(self, u64_at(b, 0), self.layout.bytes_used)?;
            let want = (total as usize - out.len()).min(METADATA_LEN);
            if data.len() < want {
                return Err(bad(format!("the {what} is cut short")));
            }
            out.extend_from_slice(&data[..want]);
        }
        Ok(out)
    }

    /// Read one metadata block at `pos` (from the image start), which must
    /// end before `end`; returns its bytes and the position of the next.
    fn meta_block(&self, pos: u64, end: u64, decoder: &mut Decoder) -> Result<(Vec<u8>, u64)> {
        let mut h = [0u8; 2];
        if pos.checked_add(2).is_none_or(|e| e > end) {
            return Err(bad("a metadata reference points outside its table"));
        }
        read_at(&self.src, &mut h, self.base + pos, "metadata")?;
        let h = u16::from_le_bytes(h);
        let len = u64::from(h & !META_UNCOMPRESSED);
        if len as usize > METADATA_LEN || pos + 2 + len > end {
            return Err(bad("a metadata block is longer than 8 KiB or its table"));
        }
        let mut raw = vec![0u8; len as usize];
        read_at(&self.src, &mut raw, self.base + pos + 2, "metadata")?;
        let data = if h & META_UNCOMPRESSED != 0 {
            raw
        } else {
            let mut out = Vec::new();
            decoder.decompress(&raw, &mut out, METADATA_LEN)?;
            out
        };
        Ok((data, pos + 2 + len))
    }

    /// Read `out.len()` bytes of a metadata table (which ends at `end`)
    /// from `pos` (block from the image start, offset in it), moving `pos`.
    fn meta_read(
        &self,
        cache: &mut MetaCache,
        pos: &mut (u64, usize),
        end: u64,
        out: &mut [u8],
    ) -> Result<()> {
        let mut done = 0;
        while done < out.len() {
            let (data, next) = cache.block(self, pos.0, end)?;
            if pos.1 > data.len() {
                return Err(bad("a metadata offset points past its block"));
            }
            let n = (data.len() - pos.1).min(out.len() - done);
            out[done..done + n].copy_from_slice(&data[pos.1..pos.1 + n]);
            done += n;
            pos.1 += n;
            if pos.1 == data.len() && done < out.len() {
                *pos = (next, 0);
            }
        }
        Ok(())
    }

    fn id(&self, index: u16) -> Result<u32> {
        self.ids
            .get(usize::from(index))
            .copied()
            .ok_or_else(|| bad(format!("owner index {index} is not in the id table")))
    }

    /// Read the inode `reference` (metadata block relative to the inode
    /// table << 16 | offset).
    pub fn inode(&self, cache: &mut MetaCache, reference: u64) -> Result<Inode> {
        let l = &self.layout;
        let end = l.dir_table;
        let block = l
            .inode_table
            .checked_add(reference >> 16)
            .filter(|b| *b < end)
            .ok_or_else(|| bad("an inode reference points outside the inode table"))?;
        let mut pos = (block, (reference & 0xffff) as usize);
        let mut rd = |n: usize, cache: &mut MetaCache| -> Result<Vec<u8>> {
            let mut b = vec![0u8; n];
            self.meta_read(cache, &mut pos, end, &mut b)?;
            Ok(b)
        };
        let h = rd(16, cache)?;
        let kind_id = u16_at(&h, 0);
        let mut inode = Inode {
            kind: InodeKind::Fifo,
            mode: u16_at(&h, 2) & 0o7777,
            uid: self.id(u16_at(&h, 4))?,
            gid: self.id(u16_at(&h, 6))?,
            mtime: u32_at(&h, 8),
            nlink: 1,
            extended: kind_id > 7,
        };
        inode.kind = match kind_id {
            1 => {
                let b = rd(16, cache)?;
                inode.nlink = u32_at(&b, 4);
                InodeKind::Dir(DirRef {
                    start: u32_at(&b, 0),
                    size: u32::from(u16_at(&b, 8)),
                    offset: u16_at(&b, 10),
                })
            }
            8 => {
                let b = rd(24, cache)?;
                inode.nlink = u32_at(&b, 0);
                InodeKind::Dir(DirRef {
                    size: u32_at(&b, 4),
                    start: u32_at(&b, 8),
                    offset: u16_at(&b, 18),
                })
            }
            2 | 9 => {
                let (blocks_start, frag, offset, size) = if kind_id == 2 {
                    let b = rd(16, cache)?;
                    (
                        u64::from(u32_at(&b, 0)),
                        u32_at(&b, 4),
                        u32_at(&b, 8),
                        u64::from(u32_at(&b, 12)),
                    )
                } else {
                    let b = rd(40, cache)?;
                    inode.nlink = u32_at(&b, 24);
                    (u64_at(&b, 0), u32_at(&b, 28), u32_at(&b, 32), u64_at(&b, 8))
                };
                let bs = u64::from(l.block_size);
                let count = if frag == NO_FRAGMENT {
                    size.div_ceil(bs)
                } else {
                    size / bs
                };
                // The size words live in the inode table: a count that
                // cannot fit there is a lie, refused before allocating.
                if count.saturating_mul(4) > l.dir_table - l.inode_table {
                    return Err(bad(format!(
                        "a file of {size} bytes claims more blocks than its inode table holds"
                    )));
                }
                let words = rd(count as usize * 4, cache)?;
                InodeKind::File(FileData {
                    size,
                    blocks_start,
                    blocks: words.chunks_exact(4).map(|c| u32_at(c, 0)).collect(),
                    fragment: (frag != NO_FRAGMENT).then_some((frag, offset)),
                })
            }
            3 | 10 => {
                let b = rd(8, cache)?;
                inode.nlink = u32_at(&b, 0);
                let len = u32_at(&b, 4) as usize;
                if len > 65_536 {
                    return Err(bad(format!("a symlink target of {len} bytes")));
                }
                InodeKind::Symlink(rd(len, cache)?)
            }
            4 | 5 | 11 | 12 => {
                let b = rd(8, cache)?;
                inode.nlink = u32_at(&b, 0);
                if kind_id % 7 == 4 {
                    InodeKind::Block(u32_at(&b, 4))
                } else {
                    InodeKind::Char(u32_at(&b, 4))
                }
            }
            6 | 7 | 13 | 14 => {
                let b = rd(4, cache)?;
                inode.nlink = u32_at(&b, 0);
                if kind_id % 7 == 6 {
                    InodeKind::Fifo
                } else {
                    InodeKind::Socket
                }
            }
            other => return Err(bad(format!("unknown inode type {other}"))),
        };
        Ok(inode)
    }

    /// Read the listing of a directory, sorted by name; names are checked
    /// to be plain names (not empty, `.` or `..`, no `/` or NUL) and unique.
    pub fn read_dir(&self, cache: &mut MetaCache, dir: &DirRef) -> Result<Vec<DirEntry>> {
        let l = &self.layout;
        let end = l.bytes_used;
        let mut left = u64::from(dir.size.saturating_sub(3));
        let block = l
            .dir_table
            .checked_add(u64::from(dir.start))
            .filter(|b| *b < end)
            .ok_or_else(|| bad("a directory points outside the directory table"))?;
        let mut pos = (block, usize::from(dir.offset));
        let mut out = Vec::new();
        let take = |n: usize, left: &mut u64| -> Result<()> {
            if (n as u64) > *left {
                return Err(bad("a directory listing is longer than its inode says"));
            }
            *left -= n as u64;
            Ok(())
        };
        while left > 0 {
            let mut h = [0u8; 12];
            take(12, &mut left)?;
            self.meta_read(cache, &mut pos, end, &mut h)?;
            let count = u32_at(&h, 0) as usize + 1;
            if count > 256 {
                return Err(bad(format!("a directory header claims {count} entries")));
            }
            let start = u64::from(u32_at(&h, 4));
            for _ in 0..count {
                let mut e = [0u8; 8];
                take(8, &mut left)?;
                self.meta_read(cache, &mut pos, end, &mut e)?;
                let name_len = usize::from(u16_at(&e, 6)) + 1;
                if name_len > 256 {
                    return Err(bad(format!("an entry name of {name_len} bytes")));
                }
                let mut name = vec![0u8; name_len];
                take(name_len, &mut left)?;
                self.meta_read(cache, &mut pos, end, &mut name)?;
                check_name(&name)?;
                out.push(DirEntry {
                    name,
                    inode: (start << 16) | u64::from(u16_at(&e, 0)),
                    kind: u16_at(&e, 4),
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(w) = out.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(bad(format!(
                "a directory holds the name {} twice",
                String::from_utf8_lossy(&w[0].name)
            )));
        }
        Ok(out)
    }

    /// Position (from the start of the source) and size word of fragment
    /// block `index`.
    pub fn fragment(&self, index: u32) -> Result<(u64, u32)> {
        self.fragments
            .get(index as usize)
            .copied()
            .ok_or_else(|| bad(format!("fragment {index} is not in the fragment table")))
    }

    /// Read `buf.len()` bytes at `pos` of the image (data blocks).
    pub fn read_data(&self, buf: &mut [u8], pos: u64) -> Result<()> {
        if pos
            .checked_add(buf.len() as u64)
            .is_none_or(|e| e > self.layout.bytes_used)
        {
            return Err(bad("a data block lies outside the image"));
        }
        read_at(&self.src, buf, self.base + pos, "data")
    }
}

/// A name as a path component: not empty, `.` or `..`, no `/`, no NUL.
fn check_name(name: &[u8]) -> Result<()> {
    let shown = || String::from_utf8_lossy(name).escape_debug().to_string();
    if name.contains(&0) {
        return Err(bad(format!(
            "entry name with a NUL byte: {}; refusing it",
            shown()
        )));
    }
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') {
        return Err(bad(format!(
            "entry name {} is `.`, `..` or holds `/`; refusing it",
            shown()
        )));
    }
    Ok(())
}

impl MetaCache {
    fn new(compressor: Compression) -> MetaCache {
        MetaCache {
            blocks: HashMap::new(),
            order: VecDeque::new(),
            decoder: Decoder::new(compressor),
        }
    }

    /// The metadata block at `pos` and the position of the next one.
    fn block<S: Source>(
        &mut self,
        image: &Image<S>,
        pos: u64,
        end: u64,
    ) -> Result<(Arc<Vec<u8>>, u64)> {
        if let Some((d, next)) = self.blocks.get(&pos)
            && *next <= end
        {
            return Ok((d.clone(), *next));
        }
        let (data, next) = image.meta_block(pos, end, &mut self.decoder)?;
        let data = Arc::new(data);
        if self.order.len() >= META_CACHE_BLOCKS
            && let Some(old) = self.order.pop_front()
        {
            self.blocks.remove(&old);
        }
        if self.blocks.insert(pos, (data.clone(), next)).is_none() {
            self.order.push_back(pos);
        }
        Ok((data, next))
    }

    /// The decoder of this cache, for data blocks read on the same thread.
    pub fn decoder(&mut self) -> &mut Decoder {
        &mut self.decoder
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_truncation_are_errors() {
        assert!(Image::open(vec![0u8; 200], 0).is_err());
        let mut sb = vec![0u8; SUPERBLOCK_LEN];
        sb[0..4].copy_from_slice(b"hsqs");
        sb[12..16].copy_from_slice(&131_072u32.to_le_bytes());
        sb[20..22].copy_from_slice(&6u16.to_le_bytes());
        sb[22..24].copy_from_slice(&17u16.to_le_bytes());
        sb[28..30].copy_from_slice(&4u16.to_le_bytes());
        // Tables out of order.
        sb[40..48].copy_from_slice(&4096u64.to_le_bytes());
        sb[64..72].copy_from_slice(&200u64.to_le_bytes());
        sb[72..80].copy_from_slice(&100u64.to_le_bytes());
        let e = Image::open(sb.clone(), 0).err().expect("refused");
        assert!(e.to_string().contains("out of order"), "{e}");
        // In order, but the file ends before them.
        sb[72..80].copy_from_slice(&300u64.to_le_bytes());
        sb[48..56].copy_from_slice(&400u64.to_le_bytes());
        sb[26..28].copy_from_slice(&1u16.to_le_bytes());
        let e = Image::open(sb, 0).err().expect("refused");
        assert!(e.to_string().contains("truncated"), "{e}");
    }

    #[test]
    fn names_must_be_plain() {
        for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name(b"a.b").is_ok());
    }
}
