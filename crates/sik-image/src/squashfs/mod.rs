//! SquashFS 4.0: the superblock facts, the padding rule, and a streaming
//! reader of the tables and file data with bounded block decompression.
//!
//! Feature `backhand` (default): [`describe_error`] for backhand's errors,
//! and [`read_superblock`] also checks compressor options with backhand's
//! parser. Without it (the AppImage runtime) backhand is not linked.
//!
//! The reader ([`Image`], [`walk()`], [`Image::read_file`]) reads an inode,
//! a directory listing or a data block when it is needed, never the whole
//! inode or directory table, so listing and extraction take memory bounded
//! by the largest directory and the blocks in flight, not by the image.
//!
//! Images this project writes are padded with zero bytes to a multiple of
//! [`PAD_LEN`] after `bytes_used`, as mksquashfs does (loop devices read
//! whole 4 KiB pages). The padded length is the *payload* of an
//! ExtensionImage; anything after it (a signature block) is not part of the
//! filesystem and is ignored by the kernel and by unsquashfs.

use std::io::{Read, Seek, SeekFrom};

use crate::{Error, Result};

mod data;
mod decode;
mod tables;
mod walk;

pub use data::{DataBuffers, FragmentCache};
pub use decode::Decoder;
pub use tables::{
    BLOCK_UNCOMPRESSED, DirEntry, DirRef, FileData, Image, Inode, InodeKind, Layout, METADATA_LEN,
    MetaCache, Source,
};
pub use walk::{Visit, walk};

/// Images are padded to a multiple of this many bytes.
pub const PAD_LEN: u64 = 4096;
/// Size of the SquashFS 4.0 superblock.
pub const SUPERBLOCK_LEN: usize = 96;
/// The "not present" value of a table pointer.
pub const NOT_SET: u64 = u64::MAX;

/// A SquashFS compressor, by its id in the superblock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// id 1; zlib streams (mksquashfs calls it gzip).
    Gzip,
    /// id 2; legacy LZMA.
    Lzma,
    /// id 3.
    Lzo,
    /// id 4.
    Xz,
    /// id 5.
    Lz4,
    /// id 6.
    Zstd,
}

impl Compression {
    /// From the superblock's compressor id.
    pub fn from_id(id: u16) -> Option<Self> {
        Some(match id {
            1 => Compression::Gzip,
            2 => Compression::Lzma,
            3 => Compression::Lzo,
            4 => Compression::Xz,
            5 => Compression::Lz4,
            6 => Compression::Zstd,
            _ => return None,
        })
    }

    /// The superblock's compressor id.
    pub fn id(self) -> u16 {
        match self {
            Compression::Gzip => 1,
            Compression::Lzma => 2,
            Compression::Lzo => 3,
            Compression::Xz => 4,
            Compression::Lz4 => 5,
            Compression::Zstd => 6,
        }
    }

    /// The name mksquashfs uses (`-comp NAME`).
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Lzma => "lzma",
            Compression::Lzo => "lzo",
            Compression::Xz => "xz",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// Superblock flag bits (SquashFS 4.0).
pub mod flags {
    /// Inodes are stored uncompressed.
    pub const UNCOMPRESSED_INODES: u16 = 0x0001;
    /// Data blocks are stored uncompressed.
    pub const UNCOMPRESSED_DATA: u16 = 0x0002;
    /// Fragments are stored uncompressed.
    pub const UNCOMPRESSED_FRAGMENTS: u16 = 0x0008;
    /// No fragments are used.
    pub const NO_FRAGMENTS: u16 = 0x0010;
    /// Fragments are always generated.
    pub const ALWAYS_FRAGMENTS: u16 = 0x0020;
    /// Duplicate files were deduplicated.
    pub const DUPLICATES: u16 = 0x0040;
    /// An NFS export table is present.
    pub const EXPORTABLE: u16 = 0x0080;
    /// Extended attributes are stored uncompressed.
    pub const UNCOMPRESSED_XATTRS: u16 = 0x0100;
    /// No extended attributes are stored.
    pub const NO_XATTRS: u16 = 0x0200;
    /// Compressor options follow the superblock.
    pub const COMPRESSOR_OPTIONS: u16 = 0x0400;
    /// The id table is stored uncompressed.
    pub const UNCOMPRESSED_IDS: u16 = 0x0800;
}

/// What a user asks about a SquashFS image.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SuperblockFacts {
    /// Compressor, `None` if the id is unknown.
    pub compression: Option<Compression>,
    /// Raw compressor id.
    pub compression_id: u16,
    /// Data block size in bytes.
    pub block_size: u32,
    /// Number of inodes.
    pub inode_count: u32,
    /// Bytes used by the filesystem (unpadded).
    pub bytes_used: u64,
    /// Modification time of the image (seconds since the epoch).
    pub mod_time: u32,
    /// Number of fragment blocks.
    pub fragment_count: u32,
    /// Number of distinct uids/gids.
    pub id_count: u16,
    /// Superblock flags.
    pub flags: u16,
    /// Whether an xattr table is present.
    pub has_xattrs: bool,
}

impl SuperblockFacts {
    /// `bytes_used` rounded up to [`PAD_LEN`]: the length of the filesystem
    /// as this project writes it.
    pub fn padded_len(&self) -> u64 {
        padded_len(self.bytes_used)
    }
}

/// `bytes_used` rounded up to [`PAD_LEN`].
pub fn padded_len(bytes_used: u64) -> u64 {
    bytes_used.div_ceil(PAD_LEN).saturating_mul(PAD_LEN)
}

/// What a backhand error means for the image, in words for a user: its
/// parser errors (`deku error: Incomplete(NeedSize { bits: 96 })`) become
/// the fault they stand for. (Feature `backhand`, on by default.)
#[cfg(feature = "backhand")]
pub fn describe_error(e: &backhand::BackhandError) -> String {
    use backhand::BackhandError as B;
    use deku::DekuError as D;
    match e {
        B::Deku(D::Incomplete(n)) => format!(
            "a structure is cut short ({} more bytes needed): truncated, or an offset points wrong",
            n.byte_size()
        ),
        B::Deku(D::Assertion(what)) => format!("a field holds an impossible value ({what})"),
        B::Deku(D::Parse(what)) => format!("a field holds an unknown value ({what})"),
        B::Deku(D::IdVariantNotFound) => "a field holds an unknown type id".to_string(),
        B::Deku(other) => format!("unparsable structure ({other})"),
        B::UnexpectedInode => {
            "a directory entry points at an inode that cannot be there (a directory loop or a bad reference)"
                .to_string()
        }
        B::StdIo(io) => io.to_string(),
        other => other.to_string(),
    }
}

/// The superblock fields backhand checks by assertion, checked first here
/// so the error names the field.
fn check_superblock_fields(raw: &[u8; SUPERBLOCK_LEN]) -> Result<()> {
    let u16_at = |o: usize| u16::from_le_bytes([raw[o], raw[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes([raw[o], raw[o + 1], raw[o + 2], raw[o + 3]]);
    let bad = |why: String| Err(Error::malformed("squashfs superblock", why));
    if raw[0..4] != *b"hsqs" {
        return bad("no SquashFS magic (hsqs)".into());
    }
    let (major, minor) = (u16_at(28), u16_at(30));
    if (major, minor) != (4, 0) {
        return bad(format!("version {major}.{minor} (only 4.0 is read)"));
    }
    let block_size = u32_at(12);
    if !(4096..=1 << 20).contains(&block_size) || !block_size.is_power_of_two() {
        return bad(format!(
            "block size {block_size} (a power of two from 4 KiB to 1 MiB is required)"
        ));
    }
    let block_log = u16_at(22);
    if u32::from(block_log) != block_size.trailing_zeros() {
        return bad(format!(
            "block log {block_log} does not match block size {block_size}"
        ));
    }
    let compressor = u16_at(20);
    if !(1..=6).contains(&compressor) {
        return bad(format!("unknown compressor id {compressor}"));
    }
    Ok(())
}

/// Read the superblock at `offset` of `reader` (0 for an ExtensionImage,
/// the ELF end for an AppImage) and check that it is plausible.
pub fn read_superblock<R: Read + Seek + Send>(
    reader: &mut R,
    offset: u64,
) -> Result<SuperblockFacts> {
    reader.seek(SeekFrom::Start(offset))?;
    let mut raw = [0u8; SUPERBLOCK_LEN];
    reader.read_exact(&mut raw).map_err(|_| {
        Error::malformed("squashfs superblock", "the file ends inside the superblock")
    })?;
    check_superblock_fields(&raw)?;
    #[cfg(feature = "backhand")]
    {
        // backhand also parses the compressor options that may follow.
        use backhand::kind::{Kind, LE_V4_0};
        reader.seek(SeekFrom::Start(offset))?;
        let mut buf = std::io::BufReader::new(&mut *reader);
        let kind = Kind::from_const(LE_V4_0).map_err(|e| Error::malformed("squashfs", e))?;
        backhand::Squashfs::superblock_and_compression_options(&mut buf, &kind)
            .map_err(|e| Error::malformed("squashfs superblock", describe_error(&e)))?;
    }
    let u16_at = |o: usize| u16::from_le_bytes([raw[o], raw[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes([raw[o], raw[o + 1], raw[o + 2], raw[o + 3]]);
    let u64_at = |o: usize| u64::from_le_bytes(raw[o..o + 8].try_into().expect("8 bytes"));
    let bytes_used = u64_at(40);
    if bytes_used < SUPERBLOCK_LEN as u64 {
        return Err(Error::malformed(
            "squashfs superblock",
            "bytes_used is smaller than the superblock",
        ));
    }
    let compression_id = u16_at(20);
    Ok(SuperblockFacts {
        compression: Compression::from_id(compression_id),
        compression_id,
        block_size: u32_at(12),
        inode_count: u32_at(4),
        bytes_used,
        mod_time: u32_at(8),
        fragment_count: u32_at(16),
        id_count: u16_at(26),
        flags: u16_at(24),
        has_xattrs: u64_at(56) != NOT_SET,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding() {
        assert_eq!(padded_len(96), 4096);
        assert_eq!(padded_len(4096), 4096);
        assert_eq!(padded_len(4097), 8192);
    }

    #[test]
    fn garbage_is_an_error() {
        let mut c = std::io::Cursor::new(vec![0u8; 200]);
        assert!(read_superblock(&mut c, 0).is_err());
        let mut c = std::io::Cursor::new(b"hsqs".to_vec());
        assert!(read_superblock(&mut c, 0).is_err());
    }
}
