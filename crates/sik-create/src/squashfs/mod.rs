//! A SquashFS 4.0 writer with parallel block compression, file
//! deduplication, hard links and extended attributes.
//!
//! Entries are added in any order (a tar archive has any order); the tree is
//! kept in memory (metadata only) and written out by [`SquashfsWriter::finish`].
//! File data is streamed: each block is compressed on a worker thread and
//! written in submission order, so the image is byte-identical whatever the
//! thread count. The exact layout is described in `spec/extension-image.md`,
//! section "SquashFS layout".
//!
//! ```no_run
//! use sik_create::squashfs::{Compressor, Meta, SquashfsWriter, WriterOptions};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let out = std::fs::File::create("/tmp/example.sqfs")?;
//! let opts = WriterOptions {
//!     compressor: Compressor::Zstd,
//!     level: None,
//!     block_size: 128 * 1024,
//!     mod_time: 0,
//!     threads: 0,
//! };
//! let mut w = SquashfsWriter::new(out, opts)?;
//! let meta = Meta { mode: 0o644, uid: 0, gid: 0, mtime: 0, xattrs: Vec::new() };
//! w.add_file(b"usr/share/hello.txt", meta, &mut &b"hello\n"[..])?;
//! let summary = w.finish()?;
//! assert_eq!(summary.file_len % 4096, 0);
//! # Ok(())
//! # }
//! ```

mod compress;
mod data;
mod options;
mod pipeline;
mod tables;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;

use data::FileData;
use options::compressor_options;
pub use options::{Compressor, Meta, Summary, WriteError, WriterOptions};
use pipeline::Pipeline;

/// Flag bit in a data block's size word: the block is stored uncompressed.
pub(crate) const DATA_UNCOMPRESSED: u32 = 1 << 24;
/// Marks a sparse (all-zero, not stored) block in a file's block list.
const SPARSE: u64 = u64::MAX;
/// Longest name of a directory entry.
const MAX_NAME_LEN: usize = 256;
/// Longest symlink target the kernel accepts (it refuses more than a page).
/// backhand's reader accepts at most 255 bytes.
pub const MAX_SYMLINK_LEN: usize = 4095;
/// Upper bound of compression threads.
const MAX_THREADS: usize = 256;

/// Whether an extended attribute name can be stored (SquashFS knows the
/// `user.`, `trusted.` and `security.` prefixes only).
pub fn xattr_name_supported(name: &[u8]) -> bool {
    xattr_prefix(name).is_some()
}

/// Splits a full xattr name into the SquashFS prefix id and the rest.
fn xattr_prefix(name: &[u8]) -> Option<(u16, &[u8])> {
    for (id, p) in [(0u16, &b"user."[..]), (1, b"trusted."), (2, b"security.")] {
        if let Some(rest) = name.strip_prefix(p)
            && !rest.is_empty()
            && rest.len() <= 255
        {
            return Some((id, rest));
        }
    }
    None
}

/// What kind of entry an inode is.
#[derive(Debug)]
enum Kind {
    Dir {
        children: BTreeMap<Vec<u8>, u32>,
        explicit: bool,
    },
    File {
        data: u32,
    },
    Symlink(Vec<u8>),
    CharDev(u32),
    BlockDev(u32),
    Fifo,
    Socket,
}

/// One inode of the tree (several directory entries may share it).
#[derive(Debug)]
struct Node {
    meta: Meta,
    kind: Kind,
    /// Directory entries naming this inode (not used for directories).
    links: u32,
}

/// A regular file's content written by [`SquashfsWriter::add_file_data`],
/// not yet named.
#[derive(Debug, Clone, Copy)]
pub struct FileRef(u32);

/// Writes one SquashFS 4.0 image. See the module documentation.
pub struct SquashfsWriter {
    opts: WriterOptions,
    level: i32,
    comp_opts: Vec<u8>,
    pipeline: Pipeline,
    nodes: Vec<Node>,
    files: Vec<FileData>,
    frag_buf: Vec<u8>,
    frag_seqs: Vec<u64>,
    small_dups: HashMap<(u64, u128), (u32, u32)>,
    large_dups: HashMap<(u64, u128), u32>,
    duplicate_files: u64,
    zeros: Vec<u8>,
    scratch: Vec<u8>,
}

fn show(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

/// Splits and validates an image path.
fn components(path: &[u8]) -> Result<Vec<&[u8]>, WriteError> {
    if path.is_empty() {
        return Err(WriteError::InvalidPath("(empty path)".into()));
    }
    let mut out = Vec::new();
    for c in path.split(|&b| b == b'/') {
        if c.is_empty() || c == b"." || c == b".." || c.len() > MAX_NAME_LEN || c.contains(&0) {
            return Err(WriteError::InvalidPath(show(path)));
        }
        out.push(c);
    }
    Ok(out)
}

/// Linux `new_encode_dev`: the device number as the kernel decodes it.
fn encode_dev(path: &[u8], major: u32, minor: u32) -> Result<u32, WriteError> {
    if major >= 1 << 12 || minor >= 1 << 20 {
        return Err(WriteError::InvalidDevice(format!(
            "{} ({major}:{minor})",
            show(path)
        )));
    }
    Ok((minor & 0xff) | (major << 8) | ((minor & !0xff) << 12))
}

fn check_xattrs(path: &[u8], meta: &Meta) -> Result<(), WriteError> {
    let mut seen: Vec<&[u8]> = Vec::new();
    for (name, value) in &meta.xattrs {
        if xattr_prefix(name).is_none() || seen.contains(&name.as_slice()) {
            return Err(WriteError::InvalidXattr(format!(
                "{}: {}",
                show(path),
                show(name)
            )));
        }
        if value.len() > u32::MAX as usize / 2 {
            return Err(WriteError::InvalidXattr(format!(
                "{}: {}",
                show(path),
                show(name)
            )));
        }
        seen.push(name);
    }
    Ok(())
}

impl SquashfsWriter {
    /// Starts an image in `out` (truncated first) with `opts`.
    pub fn new(out: File, opts: WriterOptions) -> Result<Self, WriteError> {
        let bs = opts.block_size;
        if !bs.is_power_of_two() || !(4096..=1 << 20).contains(&bs) {
            return Err(WriteError::InvalidOptions(format!(
                "block size {bs} is not a power of two from 4096 to 1048576"
            )));
        }
        let level = match (opts.level, opts.compressor.level_range()) {
            (None, _) => opts.compressor.default_level().unwrap_or(0),
            (Some(l), Some((lo, hi))) if (lo..=hi).contains(&l) => l,
            (Some(l), Some((lo, hi))) => {
                return Err(WriteError::InvalidOptions(format!(
                    "level {l} is outside {lo}..={hi} for {:?}",
                    opts.compressor
                )));
            }
            (Some(_), None) => {
                return Err(WriteError::InvalidOptions(format!(
                    "{:?} takes no compression level",
                    opts.compressor
                )));
            }
        };
        let threads = if opts.threads == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            opts.threads
        }
        .min(MAX_THREADS);
        let comp_opts = compressor_options(opts.compressor, level);
        out.set_len(0)?;
        let data_start = tables::SUPERBLOCK_LEN
            + if comp_opts.is_empty() {
                0
            } else {
                2 + comp_opts.len() as u64
            };
        let pipeline = Pipeline::new(out, data_start, threads, opts.compressor, level, bs)?;
        let root = Node {
            meta: Meta {
                mode: 0o755,
                uid: 0,
                gid: 0,
                mtime: opts.mod_time,
                xattrs: Vec::new(),
            },
            kind: Kind::Dir {
                children: BTreeMap::new(),
                explicit: false,
            },
            links: 1,
        };
        Ok(SquashfsWriter {
            opts,
            level,
            comp_opts,
            pipeline,
            nodes: vec![root],
            files: Vec::new(),
            frag_buf: Vec::new(),
            frag_seqs: Vec::new(),
            small_dups: HashMap::new(),
            large_dups: HashMap::new(),
            duplicate_files: 0,
            zeros: vec![0u8; bs as usize],
            scratch: Vec::new(),
        })
    }

    /// Sets the root directory's metadata (default: 0755, root:root,
    /// `mod_time`).
    pub fn set_root(&mut self, meta: Meta) {
        self.nodes[0].meta = meta;
    }

    fn implicit_dir_meta(&self) -> Meta {
        Meta {
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: self.opts.mod_time,
            xattrs: Vec::new(),
        }
    }

    /// Finds (creating implicit directories) the parent directory of `path`
    /// and returns its node with the last component.
    fn parent_of<'p>(&mut self, path: &'p [u8]) -> Result<(u32, &'p [u8]), WriteError> {
        let comps = components(path)?;
        let (last, parents) = comps
            .split_last()
            .ok_or_else(|| WriteError::InvalidPath(show(path)))?;
        let mut cur = 0u32;
        for c in parents {
            let existing = match &self.nodes[cur as usize].kind {
                Kind::Dir { children, .. } => children.get(*c).copied(),
                _ => return Err(WriteError::NotADirectory(show(path))),
            };
            cur = match existing {
                Some(id) => {
                    if !matches!(self.nodes[id as usize].kind, Kind::Dir { .. }) {
                        return Err(WriteError::NotADirectory(show(path)));
                    }
                    id
                }
                None => {
                    let id = self.push_node(Node {
                        meta: self.implicit_dir_meta(),
                        kind: Kind::Dir {
                            children: BTreeMap::new(),
                            explicit: false,
                        },
                        links: 1,
                    })?;
                    self.children_mut(cur).insert(c.to_vec(), id);
                    id
                }
            };
        }
        Ok((cur, last))
    }

    fn push_node(&mut self, node: Node) -> Result<u32, WriteError> {
        let id = u32::try_from(self.nodes.len())
            .ok()
            .filter(|&n| n < u32::MAX - 2)
            .ok_or_else(|| WriteError::TooLarge("too many inodes".into()))?;
        self.nodes.push(node);
        Ok(id)
    }

    fn children_mut(&mut self, dir: u32) -> &mut BTreeMap<Vec<u8>, u32> {
        match &mut self.nodes[dir as usize].kind {
            Kind::Dir { children, .. } => children,
            // parent_of only returns directories.
            _ => unreachable!("parent is a directory"),
        }
    }

    fn lookup(&self, dir: u32, name: &[u8]) -> Option<u32> {
        match &self.nodes[dir as usize].kind {
            Kind::Dir { children, .. } => children.get(name).copied(),
            _ => None,
        }
    }

    /// Validates, then inserts a new non-directory node at `path`.
    fn insert(&mut self, path: &[u8], meta: Meta, kind: Kind) -> Result<(), WriteError> {
        let (parent, name) = self.parent_of(path)?;
        if self.lookup(parent, name).is_some() {
            return Err(WriteError::Duplicate(show(path)));
        }
        let id = self.push_node(Node {
            meta,
            kind,
            links: 1,
        })?;
        self.children_mut(parent).insert(name.to_vec(), id);
        Ok(())
    }

    /// Fails when `path` cannot take a new entry (bad path, exists, parent
    /// not a directory), without changing anything.
    fn check_free(&self, path: &[u8]) -> Result<(), WriteError> {
        let comps = components(path)?;
        let mut cur = 0u32;
        for (i, c) in comps.iter().enumerate() {
            match &self.nodes[cur as usize].kind {
                Kind::Dir { children, .. } => match children.get(*c) {
                    Some(_) if i + 1 == comps.len() => {
                        return Err(WriteError::Duplicate(show(path)));
                    }
                    Some(&id) => cur = id,
                    None => return Ok(()),
                },
                _ => return Err(WriteError::NotADirectory(show(path))),
            }
        }
        Ok(())
    }

    /// Adds a directory. A directory created implicitly as the parent of an
    /// earlier entry gets `meta` now; adding the same directory twice is
    /// [`WriteError::Duplicate`].
    pub fn add_dir(&mut self, path: &[u8], meta: Meta) -> Result<(), WriteError> {
        check_xattrs(path, &meta)?;
        let (parent, name) = self.parent_of(path)?;
        match self.lookup(parent, name) {
            Some(id) => match &mut self.nodes[id as usize] {
                Node {
                    kind: Kind::Dir { explicit, .. },
                    meta: m,
                    ..
                } if !*explicit => {
                    *explicit = true;
                    *m = meta;
                    Ok(())
                }
                _ => Err(WriteError::Duplicate(show(path))),
            },
            None => {
                let id = self.push_node(Node {
                    meta,
                    kind: Kind::Dir {
                        children: BTreeMap::new(),
                        explicit: true,
                    },
                    links: 1,
                })?;
                self.children_mut(parent).insert(name.to_vec(), id);
                Ok(())
            }
        }
    }

    /// Adds a regular file whose content is read from `data` to its end.
    /// Returns the number of bytes read.
    pub fn add_file(
        &mut self,
        path: &[u8],
        meta: Meta,
        data: &mut dyn Read,
    ) -> Result<u64, WriteError> {
        check_xattrs(path, &meta)?;
        self.check_free(path)?;
        let file = self.write_data(data)?;
        let size = self.files[file as usize].size;
        self.insert(path, meta, Kind::File { data: file })?;
        Ok(size)
    }

    /// Writes a regular file's content from `data` without naming it yet;
    /// [`add_file_ref`](Self::add_file_ref) gives it a name. A content that
    /// is never named stays in the image as unreferenced blocks (duplicates
    /// of earlier content cost nothing: they share the earlier blocks).
    /// Returns the reference and the number of bytes read.
    pub fn add_file_data(&mut self, data: &mut dyn Read) -> Result<(FileRef, u64), WriteError> {
        let file = self.write_data(data)?;
        Ok((FileRef(file), self.files[file as usize].size))
    }

    /// Adds a regular file whose content was written by
    /// [`add_file_data`](Self::add_file_data).
    pub fn add_file_ref(
        &mut self,
        path: &[u8],
        meta: Meta,
        data: FileRef,
    ) -> Result<(), WriteError> {
        check_xattrs(path, &meta)?;
        if data.0 as usize >= self.files.len() {
            return Err(WriteError::NotFound(show(path)));
        }
        self.insert(path, meta, Kind::File { data: data.0 })
    }

    /// Removes the non-directory entry at `path` (one name of a hard-linked
    /// inode removes only that name), so a later source can put another
    /// entry there.
    pub fn remove(&mut self, path: &[u8]) -> Result<(), WriteError> {
        let (parent, name) = self.parent_of(path)?;
        let id = self
            .lookup(parent, name)
            .ok_or_else(|| WriteError::NotFound(show(path)))?;
        if matches!(self.nodes[id as usize].kind, Kind::Dir { .. }) {
            return Err(WriteError::IsADirectory(show(path)));
        }
        self.children_mut(parent).remove(name);
        let node = &mut self.nodes[id as usize];
        node.links = node.links.saturating_sub(1);
        Ok(())
    }

    /// Replaces the metadata of the directory at `path`.
    pub fn set_dir_meta(&mut self, path: &[u8], meta: Meta) -> Result<(), WriteError> {
        check_xattrs(path, &meta)?;
        let id = self.resolve(path)?;
        match &mut self.nodes[id as usize] {
            Node {
                kind: Kind::Dir { explicit, .. },
                meta: m,
                ..
            } => {
                *explicit = true;
                *m = meta;
                Ok(())
            }
            _ => Err(WriteError::NotADirectory(show(path))),
        }
    }

    /// Adds a symbolic link; `target` is stored byte for byte.
    pub fn add_symlink(
        &mut self,
        path: &[u8],
        target: &[u8],
        meta: Meta,
    ) -> Result<(), WriteError> {
        check_xattrs(path, &meta)?;
        if target.is_empty() || target.len() > MAX_SYMLINK_LEN || target.contains(&0) {
            return Err(WriteError::InvalidSymlink(show(path)));
        }
        self.insert(path, meta, Kind::Symlink(target.to_vec()))
    }

    /// Adds `path` as another name of the inode at `existing` (added earlier,
    /// not a directory).
    pub fn add_hardlink(&mut self, path: &[u8], existing: &[u8]) -> Result<(), WriteError> {
        let target = self.resolve(existing)?;
        if matches!(self.nodes[target as usize].kind, Kind::Dir { .. }) {
            return Err(WriteError::HardlinkToDirectory(show(existing)));
        }
        let (parent, name) = self.parent_of(path)?;
        if self.lookup(parent, name).is_some() {
            return Err(WriteError::Duplicate(show(path)));
        }
        let node = &mut self.nodes[target as usize];
        node.links = node
            .links
            .checked_add(1)
            .ok_or_else(|| WriteError::TooLarge(format!("link count of {}", show(existing))))?;
        self.children_mut(parent).insert(name.to_vec(), target);
        Ok(())
    }

    fn resolve(&self, path: &[u8]) -> Result<u32, WriteError> {
        let comps = components(path)?;
        let mut cur = 0u32;
        for c in comps {
            cur = self
                .lookup(cur, c)
                .ok_or_else(|| WriteError::NotFound(show(path)))?;
        }
        Ok(cur)
    }

    /// Adds a character device node.
    pub fn add_char_device(
        &mut self,
        path: &[u8],
        meta: Meta,
        major: u32,
        minor: u32,
    ) -> Result<(), WriteError> {
        check_xattrs(path, &meta)?;
        let dev = encode_dev(path, major, minor)?;
        self.insert(path, meta, Kind::CharDev(dev))
    }

    /// Adds a block device node.
    pub fn add_block_device(
        &mut self,
        path: &[u8],
        meta: Meta,
        major: u32,
        minor: u32,
    ) -> Result<(), WriteError> {
        check_xattrs(path, &meta)?;
        let dev = encode_dev(path, major, minor)?;
        self.insert(path, meta, Kind::BlockDev(dev))
    }

    /// Adds a named pipe.
    pub fn add_fifo(&mut self, path: &[u8], meta: Meta) -> Result<(), WriteError> {
        check_xattrs(path, &meta)?;
        self.insert(path, meta, Kind::Fifo)
    }

    /// Adds a unix socket node.
    pub fn add_socket(&mut self, path: &[u8], meta: Meta) -> Result<(), WriteError> {
        check_xattrs(path, &meta)?;
        self.insert(path, meta, Kind::Socket)
    }

    /// Writes the tables and the superblock, pads the file to a multiple of
    /// 4096 bytes and syncs nothing (the caller fsyncs and renames).
    pub fn finish(mut self) -> Result<Summary, WriteError> {
        check_xattrs(b"/", &self.nodes[0].meta)?;
        self.flush_fragment()?;
        let SquashfsWriter {
            opts,
            level,
            comp_opts,
            pipeline,
            nodes,
            files,
            frag_seqs,
            duplicate_files,
            ..
        } = self;
        let (file, data_end, placed) = pipeline.finish()?;
        tables::write_tables(tables::Input {
            file,
            data_end,
            placed: &placed,
            nodes: &nodes,
            files: &files,
            frag_seqs: &frag_seqs,
            opts: &opts,
            level,
            comp_opts: &comp_opts,
            duplicate_files,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_use_the_kernel_encoding() {
        assert_eq!(encode_dev(b"x", 1, 3).unwrap(), 0x103);
        let (major, minor) = (259u32, 300_000u32);
        let want = (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12);
        assert_eq!(encode_dev(b"x", major, minor).unwrap(), want);
        assert!(encode_dev(b"x", 4096, 0).is_err());
        assert!(encode_dev(b"x", 0, 1 << 20).is_err());
    }

    #[test]
    fn paths_are_validated() {
        assert_eq!(components(b"a/b").unwrap(), vec![&b"a"[..], b"b"]);
        for bad in [
            &b""[..],
            b"/a",
            b"a/",
            b"a//b",
            b".",
            b"..",
            b"a/./b",
            b"a\0b",
        ] {
            assert!(components(bad).is_err(), "{bad:?}");
        }
        assert!(components(&[b'x'; 256]).is_ok());
        assert!(components(&[b'x'; 257]).is_err());
    }

    #[test]
    fn xattr_prefixes() {
        assert_eq!(xattr_prefix(b"user.x"), Some((0, &b"x"[..])));
        assert_eq!(xattr_prefix(b"trusted.x"), Some((1, &b"x"[..])));
        assert_eq!(
            xattr_prefix(b"security.capability"),
            Some((2, &b"capability"[..]))
        );
        assert_eq!(xattr_prefix(b"user."), None);
        assert_eq!(xattr_prefix(b"system.posix_acl_access"), None);
    }

    #[test]
    fn compressor_options_match_mksquashfs() {
        assert!(compressor_options(Compressor::Zstd, 15).is_empty());
        assert_eq!(compressor_options(Compressor::Zstd, 3), 3u32.to_le_bytes());
        assert!(compressor_options(Compressor::Gzip, 9).is_empty());
        assert_eq!(
            compressor_options(Compressor::Gzip, 6),
            [6, 0, 0, 0, 15, 0, 0, 0]
        );
        assert_eq!(
            compressor_options(Compressor::Lz4, 0),
            [1, 0, 0, 0, 0, 0, 0, 0]
        );
        assert!(compressor_options(Compressor::Xz, 6).is_empty());
    }
}
