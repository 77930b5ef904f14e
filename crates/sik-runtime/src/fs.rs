//! The embedded SquashFS served read-only through FUSE.
//!
//! backhand parses the image's tables once; file data is then read block by
//! block at any offset (the kernel asks for pages in any order when it maps
//! an executable), with a small cache of decompressed blocks.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::BufReader;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use backhand::compression::{CompressionAction, Compressor, DefaultCompressor};
use backhand::{DataSize, FilesystemReader, InnerNode};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, ReplyOpen, ReplyStatfs, Request,
};

/// The image never changes while mounted: let the kernel cache everything.
const TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// Fragment index meaning "no fragment".
const NO_FRAGMENT: usize = 0xffff_ffff;
/// Decompressed blocks kept in memory.
const CACHE_BLOCKS: usize = 32;

struct FileData {
    /// Absolute file offset of the first data block.
    start: u64,
    sizes: Vec<DataSize>,
    /// Fragment block (absolute offset, size) and offset in it.
    fragment: Option<(u64, DataSize, u32)>,
}

struct Entry {
    name: OsString,
    parent: usize,
    kind: FileType,
    perm: u16,
    uid: u32,
    gid: u32,
    mtime: u32,
    size: u64,
    rdev: u32,
    children: Vec<usize>,
    data: Option<FileData>,
    link: Option<Vec<u8>>,
}

/// A SquashFS image, ready to answer FUSE requests.
pub struct SquashFs {
    file: File,
    block_size: u32,
    compressor: Compressor,
    entries: Vec<Entry>,
    cache: Mutex<Vec<(u64, Arc<Vec<u8>>)>>,
}

impl SquashFs {
    /// Parse the tables of the SquashFS at `offset` in `path`.
    pub fn open(path: &Path, offset: u64) -> Result<SquashFs, String> {
        let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let reader = BufReader::new(
            file.try_clone()
                .map_err(|e| format!("cannot open {}: {e}", path.display()))?,
        );
        let fsr = FilesystemReader::from_reader_with_offset(reader, offset)
            .map_err(|e| format!("cannot read the SquashFS of {}: {e}", path.display()))?;
        let compressor: Compressor = match fsr.compressor {
            Some(c) => c.into(),
            None => Compressor::Uncompressed,
        };
        let fragments = fsr.fragments.clone().unwrap_or_default();
        let mut index: HashMap<&Path, usize> = HashMap::new();
        let mut entries: Vec<Entry> = Vec::with_capacity(fsr.root.nodes.len());
        for node in fsr.files() {
            let i = entries.len();
            let path = node.fullpath.as_path();
            let parent = match path.parent() {
                Some(p) => match index.get(p) {
                    Some(&pi) => pi,
                    None => return Err(format!("{} has no parent directory", path.display())),
                },
                None => 0,
            };
            index.insert(path, i);
            let name = path.file_name().unwrap_or(OsStr::new("")).to_os_string();
            let h = &node.header;
            let mut e = Entry {
                name,
                parent,
                kind: FileType::Directory,
                perm: h.permissions & 0o7777,
                uid: h.uid,
                gid: h.gid,
                mtime: h.mtime,
                size: 0,
                rdev: 0,
                children: Vec::new(),
                data: None,
                link: None,
            };
            match &node.inner {
                InnerNode::File(f) => {
                    e.kind = FileType::RegularFile;
                    e.size = f.file_len() as u64;
                    let fragment = if f.frag_index() == NO_FRAGMENT {
                        None
                    } else {
                        let fr = fragments.get(f.frag_index()).ok_or_else(|| {
                            format!("{}: fragment index out of range", path.display())
                        })?;
                        Some((offset + fr.start, fr.size, f.block_offset()))
                    };
                    e.data = Some(FileData {
                        start: offset + f.blocks_start(),
                        sizes: f.block_sizes().to_vec(),
                        fragment,
                    });
                }
                InnerNode::Symlink(s) => {
                    e.kind = FileType::Symlink;
                    let bytes = s.link.as_os_str().as_bytes().to_vec();
                    e.size = bytes.len() as u64;
                    e.link = Some(bytes);
                }
                InnerNode::Dir(_) => {}
                InnerNode::CharacterDevice(d) => {
                    e.kind = FileType::CharDevice;
                    e.rdev = d.device_number;
                }
                InnerNode::BlockDevice(d) => {
                    e.kind = FileType::BlockDevice;
                    e.rdev = d.device_number;
                }
                InnerNode::NamedPipe => e.kind = FileType::NamedPipe,
                InnerNode::Socket => e.kind = FileType::Socket,
            }
            entries.push(e);
        }
        if entries.is_empty() {
            return Err("the SquashFS has no root directory".into());
        }
        for i in 1..entries.len() {
            let p = entries[i].parent;
            entries[p].children.push(i);
        }
        let mut sorted = Vec::new();
        for i in 0..entries.len() {
            let mut c = std::mem::take(&mut entries[i].children);
            c.sort_by(|&a, &b| entries[a].name.cmp(&entries[b].name));
            sorted.push(c);
        }
        for (e, c) in entries.iter_mut().zip(sorted) {
            e.children = c;
        }
        Ok(SquashFs {
            file,
            block_size: fsr.block_size,
            compressor,
            entries,
            cache: Mutex::new(Vec::new()),
        })
    }

    fn entry(&self, ino: INodeNo) -> Option<(usize, &Entry)> {
        let i = usize::try_from(ino.0).ok()?.checked_sub(1)?;
        self.entries.get(i).map(|e| (i, e))
    }

    fn attr(&self, i: usize) -> FileAttr {
        let e = &self.entries[i];
        let t = UNIX_EPOCH + Duration::from_secs(u64::from(e.mtime));
        FileAttr {
            ino: INodeNo(i as u64 + 1),
            size: e.size,
            blocks: e.size.div_ceil(512),
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            kind: e.kind,
            perm: e.perm,
            nlink: if e.kind == FileType::Directory { 2 } else { 1 },
            uid: e.uid,
            gid: e.gid,
            rdev: e.rdev,
            blksize: self.block_size,
            flags: 0,
        }
    }

    /// One decompressed block (data block or fragment block), cached.
    fn block(&self, at: u64, size: DataSize) -> Result<Arc<Vec<u8>>, Errno> {
        if let Ok(c) = self.cache.lock()
            && let Some((_, b)) = c.iter().find(|(k, _)| *k == at)
        {
            return Ok(b.clone());
        }
        let len = size.size() as usize;
        if len > self.block_size as usize + 1024 {
            return Err(Errno::EIO);
        }
        let mut raw = vec![0u8; len];
        self.file
            .read_exact_at(&mut raw, at)
            .map_err(|_| Errno::EIO)?;
        let out = if size.uncompressed() {
            raw
        } else {
            let mut out = Vec::with_capacity(self.block_size as usize);
            DefaultCompressor
                .decompress(&raw, &mut out, self.compressor)
                .map_err(|_| Errno::EIO)?;
            out
        };
        let out = Arc::new(out);
        if let Ok(mut c) = self.cache.lock() {
            if c.len() >= CACHE_BLOCKS {
                c.remove(0);
            }
            c.push((at, out.clone()));
        }
        Ok(out)
    }

    fn read_at(&self, e: &Entry, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let Some(d) = &e.data else {
            return Err(Errno::EINVAL);
        };
        if offset >= e.size {
            return Ok(Vec::new());
        }
        let end = e.size.min(offset + u64::from(size));
        let bs = u64::from(self.block_size);
        let mut out = Vec::with_capacity((end - offset) as usize);
        let mut pos = offset;
        while pos < end {
            let b = (pos / bs) as usize;
            let in_block = (pos % bs) as usize;
            let want = ((end - pos) as usize).min(bs as usize - in_block);
            if b < d.sizes.len() {
                let s = d.sizes[b];
                if s.size() == 0 {
                    out.resize(out.len() + want, 0);
                } else {
                    let at = d.start
                        + d.sizes[..b]
                            .iter()
                            .map(|s| u64::from(s.size()))
                            .sum::<u64>();
                    let blk = self.block(at, s)?;
                    let avail = blk.get(in_block..).ok_or(Errno::EIO)?;
                    let n = want.min(avail.len());
                    out.extend_from_slice(&avail[..n]);
                    if n < want {
                        return Err(Errno::EIO);
                    }
                }
            } else {
                let (at, s, frag_off) = d.fragment.ok_or(Errno::EIO)?;
                let blk = self.block(at, s)?;
                let from = frag_off as usize + in_block;
                let slice = blk.get(from..from + want).ok_or(Errno::EIO)?;
                out.extend_from_slice(slice);
            }
            pos += want as u64;
        }
        Ok(out)
    }
}

impl Filesystem for SquashFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let Some((_, p)) = self.entry(parent) else {
            return reply.error(Errno::ENOENT);
        };
        match p
            .children
            .binary_search_by(|&c| self.entries[c].name.as_os_str().cmp(name))
        {
            Ok(k) => reply.entry(&TTL, &self.attr(p.children[k]), Generation(0)),
            Err(_) => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.entry(ino) {
            Some((i, _)) => reply.attr(&TTL, &self.attr(i)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.entry(ino).and_then(|(_, e)| e.link.as_ref()) {
            Some(l) => reply.data(l),
            None => reply.error(Errno::EINVAL),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.entry(ino) {
            Some(_) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let Some((_, e)) = self.entry(ino) else {
            return reply.error(Errno::ENOENT);
        };
        match self.read_at(e, offset, size) {
            Ok(data) => reply.data(&data),
            Err(err) => reply.error(err),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let Some((i, e)) = self.entry(ino) else {
            return reply.error(Errno::ENOENT);
        };
        if e.kind != FileType::Directory {
            return reply.error(Errno::ENOTDIR);
        }
        let total = e.children.len() as u64 + 2;
        let mut k = offset;
        while k < total {
            let full = match k {
                0 => reply.add(INodeNo(i as u64 + 1), 1, FileType::Directory, "."),
                1 => reply.add(INodeNo(e.parent as u64 + 1), 2, FileType::Directory, ".."),
                _ => {
                    let c = e.children[(k - 2) as usize];
                    let ce = &self.entries[c];
                    reply.add(INodeNo(c as u64 + 1), k + 1, ce.kind, &ce.name)
                }
            };
            if full {
                break;
            }
            k += 1;
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let len = self.file.metadata().map(|m| m.len()).unwrap_or(0);
        reply.statfs(
            len.div_ceil(u64::from(self.block_size)),
            0,
            0,
            self.entries.len() as u64,
            0,
            self.block_size,
            255,
            self.block_size,
        );
    }
}
