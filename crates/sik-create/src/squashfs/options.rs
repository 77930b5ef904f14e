//! The writer's settings and results: the compressor and its level, the
//! options of an image, the metadata of an entry, the summary of a written
//! image and the writer's error type, and the compressor options block that
//! goes into the superblock's table area.

/// The compression algorithm of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compressor {
    /// zlib streams (superblock id 1); levels 1–9, default 9.
    Gzip,
    /// xz streams with CRC32 check and dictionary = block size (id 4);
    /// presets 0–9, default 6.
    Xz,
    /// LZ4 raw blocks, "legacy" format (id 5); no level.
    Lz4,
    /// zstd frames (id 6); levels 1–22, default 15.
    Zstd,
}

impl Compressor {
    /// The superblock's compressor id.
    pub fn id(self) -> u16 {
        match self {
            Compressor::Gzip => 1,
            Compressor::Xz => 4,
            Compressor::Lz4 => 5,
            Compressor::Zstd => 6,
        }
    }

    /// The level used when none is given (mksquashfs's defaults); `None` for
    /// LZ4, which has no level.
    pub fn default_level(self) -> Option<i32> {
        match self {
            Compressor::Gzip => Some(9),
            Compressor::Xz => Some(6),
            Compressor::Lz4 => None,
            Compressor::Zstd => Some(15),
        }
    }

    /// Accepted levels, inclusive; `None` for LZ4.
    pub fn level_range(self) -> Option<(i32, i32)> {
        match self {
            Compressor::Gzip => Some((1, 9)),
            Compressor::Xz => Some((0, 9)),
            Compressor::Lz4 => None,
            Compressor::Zstd => Some((1, 22)),
        }
    }
}

/// How an image is written.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Compression algorithm.
    pub compressor: Compressor,
    /// Compression level; `None` = the compressor's default
    /// ([`Compressor::default_level`]). LZ4 accepts only `None`.
    pub level: Option<i32>,
    /// Data block size: a power of two from 4096 to 1 MiB.
    pub block_size: u32,
    /// Superblock modification time (seconds since the epoch).
    pub mod_time: u32,
    /// Compression worker threads; 0 = available parallelism.
    pub threads: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            compressor: Compressor::Zstd,
            level: None,
            block_size: 128 * 1024,
            mod_time: 0,
            threads: 0,
        }
    }
}

/// Ownership, permissions, time and extended attributes of one entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits including setuid/setgid/sticky (`0o7777`), no type
    /// bits; higher bits are ignored.
    pub mode: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: u32,
    /// Extended attributes: full names (`b"user.foo"`) and values. Only the
    /// `user.`, `trusted.` and `security.` namespaces can be stored (see
    /// [`xattr_name_supported`](super::xattr_name_supported)).
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// What [`SquashfsWriter::finish`](super::SquashfsWriter::finish) wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Superblock `bytes_used`: the end of the last table.
    pub bytes_used: u64,
    /// Length of the file: `bytes_used` padded with zeros to 4096.
    pub file_len: u64,
    /// Number of inodes (hard links share one).
    pub inode_count: u32,
    /// Number of distinct uids/gids.
    pub id_count: u16,
    /// Number of fragment blocks.
    pub fragment_count: u32,
    /// Regular files whose content was found identical to an earlier file
    /// and shares its blocks.
    pub duplicate_files: u64,
    /// Number of distinct extended attribute sets.
    pub xattr_sets: u32,
}

/// Errors of the writer.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Reading a source or writing the image failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The path is empty, absolute, has an empty, `.` or `..` component, a
    /// NUL byte, or a component longer than 256 bytes.
    #[error("invalid path in image: {0}")]
    InvalidPath(String),
    /// The path was already added.
    #[error("already in the image: {0}")]
    Duplicate(String),
    /// The hard link target was not added.
    #[error("not in the image: {0}")]
    NotFound(String),
    /// A parent component of the path is not a directory.
    #[error("a parent is not a directory: {0}")]
    NotADirectory(String),
    /// A directory where a non-directory entry was expected.
    #[error("is a directory: {0}")]
    IsADirectory(String),
    /// A hard link to a directory was requested.
    #[error("hard link to a directory: {0}")]
    HardlinkToDirectory(String),
    /// The symlink target is empty, longer than 4095 bytes or holds a NUL.
    #[error("invalid symlink target: {0}")]
    InvalidSymlink(String),
    /// The device number does not fit (major < 4096, minor < 2^20).
    #[error("device number out of range: {0}")]
    InvalidDevice(String),
    /// An extended attribute outside user./trusted./security., an empty
    /// name, a name over 255 bytes or a name given twice.
    #[error("unsupported extended attribute: {0}")]
    InvalidXattr(String),
    /// Options out of range (block size, level, ...).
    #[error("invalid writer options: {0}")]
    InvalidOptions(String),
    /// The image would exceed a format limit.
    #[error("image too large: {0}")]
    TooLarge(String),
    /// A compression worker thread died.
    #[error("compression worker thread failed")]
    Worker,
}

/// The compressor options block mksquashfs would write for these settings
/// (empty when none is written).
pub(super) fn compressor_options(kind: Compressor, level: i32) -> Vec<u8> {
    let mut v = Vec::new();
    match kind {
        Compressor::Gzip if level != 9 => {
            v.extend_from_slice(&(level as u32).to_le_bytes());
            v.extend_from_slice(&15u16.to_le_bytes());
            v.extend_from_slice(&0u16.to_le_bytes());
        }
        Compressor::Zstd if level != 15 => v.extend_from_slice(&(level as u32).to_le_bytes()),
        Compressor::Lz4 => {
            v.extend_from_slice(&1u32.to_le_bytes());
            v.extend_from_slice(&0u32.to_le_bytes());
        }
        _ => {}
    }
    v
}
