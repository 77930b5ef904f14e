//! The embedded SquashFS served read-only through FUSE.
//!
//! backhand parses the image's tables once; file data is then read block by
//! block at any offset (the kernel asks for pages in any order when it maps
//! an executable), with a small cache of decompressed blocks.
//!
//! Requests are served by several threads (the kernel's readahead sends
//! reads ahead asynchronously, so blocks decompress in parallel). Each thread
//! keeps its buffers and its zstd context between requests, so a read costs
//! one `pread` of the compressed block, one decompression into a recycled
//! buffer and, for the usual request inside one block, no copy at all before
//! the reply.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::BufReader;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use backhand::compression::Compressor;
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
    /// Absolute file offset and size of each data block.
    blocks: Vec<(u64, DataSize)>,
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
    cache: Mutex<Cache>,
}

/// Decompressed blocks by absolute offset, oldest first, and buffers of
/// evicted blocks to decompress into again.
#[derive(Default)]
struct Cache {
    blocks: VecDeque<(u64, Arc<Vec<u8>>)>,
    spare: Vec<Vec<u8>>,
}

/// A decompressed block and the byte range of it a read wants.
type Piece = (Arc<Vec<u8>>, std::ops::Range<usize>);

/// Per-thread buffers, reused from request to request.
#[derive(Default)]
struct Scratch {
    /// The compressed block as read.
    raw: Vec<u8>,
    /// A reply spanning several blocks, assembled.
    out: Vec<u8>,
    /// zstd's decompression context (allocating one per block costs more
    /// than decompressing small blocks).
    zstd: Option<zstd::bulk::Decompressor<'static>>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

impl SquashFs {
    /// Parse the tables of the SquashFS at `offset` in `path`.
    pub fn open(path: &Path, offset: u64) -> Result<SquashFs, String> {
        let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let reader = BufReader::new(
            file.try_clone()
                .map_err(|e| format!("cannot open {}: {e}", path.display()))?,
        );
        let fsr = FilesystemReader::from_reader_with_offset_and_kind(
            reader,
            offset,
            crate::bounded::kind(),
        )
        .map_err(|e| {
            format!(
                "cannot read the SquashFS of {}: {}",
                path.display(),
                sik_image::squashfs::describe_error(&e)
            )
        })?;
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
                    let mut at = offset + f.blocks_start();
                    let blocks = f
                        .block_sizes()
                        .iter()
                        .map(|&s| {
                            let here = at;
                            at += u64::from(s.size());
                            (here, s)
                        })
                        .collect();
                    e.data = Some(FileData { blocks, fragment });
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
            cache: Mutex::new(Cache::default()),
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
        let mut out = {
            let Ok(mut c) = self.cache.lock() else {
                return Err(Errno::EIO);
            };
            if let Some((_, b)) = c.blocks.iter().find(|(k, _)| *k == at) {
                return Ok(b.clone());
            }
            c.spare.pop().unwrap_or_default()
        };
        let len = size.size() as usize;
        let bs = self.block_size as usize;
        if len > bs + 1024 || (size.uncompressed() && len > bs) {
            return Err(Errno::EIO);
        }
        out.clear();
        out.reserve_exact(bs);
        SCRATCH.with(|s| -> Result<(), Errno> {
            let mut s = s.borrow_mut();
            let s = &mut *s;
            s.raw.resize(len, 0);
            self.file
                .read_exact_at(&mut s.raw, at)
                .map_err(|_| Errno::EIO)?;
            if size.uncompressed() {
                out.extend_from_slice(&s.raw);
            } else if self.compressor == Compressor::Zstd {
                if s.zstd.is_none() {
                    s.zstd = Some(zstd::bulk::Decompressor::new().map_err(|_| Errno::EIO)?);
                }
                let z = s.zstd.as_mut().ok_or(Errno::EIO)?;
                // Writes into the spare capacity only: at most the block size.
                z.decompress_to_buffer(&s.raw[..], &mut out)
                    .map_err(|_| Errno::EIO)?;
            } else {
                crate::bounded::decompress(self.compressor, &s.raw, &mut out, bs)
                    .map_err(|_| Errno::EIO)?;
            }
            if out.len() > bs {
                return Err(Errno::EIO);
            }
            Ok(())
        })?;
        let out = Arc::new(out);
        if let Ok(mut c) = self.cache.lock() {
            // Another thread may have decompressed the same block meanwhile.
            if !c.blocks.iter().any(|(k, _)| *k == at) {
                if c.blocks.len() >= CACHE_BLOCKS
                    && let Some((_, old)) = c.blocks.pop_front()
                    && let Ok(v) = Arc::try_unwrap(old)
                    && c.spare.len() < CACHE_BLOCKS
                {
                    c.spare.push(v);
                }
                c.blocks.push_back((at, out.clone()));
            }
        }
        Ok(out)
    }

    /// The bytes of the file at `pos` up to the end of the block holding
    /// `pos` (at most `want`): the block and the range in it, or `None` for
    /// a hole (a sparse block).
    fn piece(&self, d: &FileData, pos: u64, want: usize) -> Result<Option<Piece>, Errno> {
        let bs = u64::from(self.block_size);
        let b = (pos / bs) as usize;
        let in_block = (pos % bs) as usize;
        let want = want.min(bs as usize - in_block);
        if let Some(&(at, s)) = d.blocks.get(b) {
            if s.size() == 0 {
                return Ok(None);
            }
            let blk = self.block(at, s)?;
            if blk.len() < in_block + want {
                return Err(Errno::EIO);
            }
            Ok(Some((blk, in_block..in_block + want)))
        } else {
            let (at, s, frag_off) = d.fragment.ok_or(Errno::EIO)?;
            let blk = self.block(at, s)?;
            let from = frag_off as usize + in_block;
            if blk.len() < from + want {
                return Err(Errno::EIO);
            }
            Ok(Some((blk, from..from + want)))
        }
    }

    /// Answer a read of `size` bytes at `offset` of `e`.
    fn read_reply(&self, e: &Entry, offset: u64, size: u32, reply: ReplyData) {
        let Some(d) = &e.data else {
            return reply.error(Errno::EINVAL);
        };
        if offset >= e.size {
            return reply.data(&[]);
        }
        let end = e.size.min(offset + u64::from(size));
        let total = (end - offset) as usize;
        // The usual request lies in one block: reply from the cached block.
        match self.piece(d, offset, total) {
            Err(err) => return reply.error(err),
            Ok(Some((blk, r))) if r.len() == total => return reply.data(&blk[r]),
            Ok(_) => {}
        }
        let assembled = SCRATCH.with(|s| -> Result<Vec<u8>, Errno> {
            let mut out = std::mem::take(&mut s.borrow_mut().out);
            out.clear();
            out.reserve(total);
            let mut pos = offset;
            while pos < end {
                match self.piece(d, pos, (end - pos) as usize) {
                    Ok(Some((blk, r))) => out.extend_from_slice(&blk[r]),
                    Ok(None) => {
                        let bs = u64::from(self.block_size);
                        let hole = ((end - pos) as usize).min((bs - pos % bs) as usize);
                        out.resize(out.len() + hole, 0);
                    }
                    Err(err) => {
                        s.borrow_mut().out = out;
                        return Err(err);
                    }
                }
                pos = offset + out.len() as u64;
            }
            Ok(out)
        });
        match assembled {
            Ok(out) => {
                reply.data(&out);
                SCRATCH.with(|s| s.borrow_mut().out = out);
            }
            Err(err) => reply.error(err),
        }
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
        self.read_reply(e, offset, size, reply);
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
