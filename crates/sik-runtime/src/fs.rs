//! The embedded SquashFS served read-only through FUSE.
//!
//! sik-image's streaming reader walks the tree once at mount; file data is
//! then read block by block at any offset (the kernel asks for pages in any
//! order when it maps an executable), with a small cache of decompressed
//! blocks. Every block decompresses within its size bound (sik-image's
//! [`Decoder`]).
//!
//! Requests are served by several threads (the kernel's readahead sends
//! reads ahead asynchronously, so blocks decompress in parallel). Each thread
//! keeps its buffers and its decoder (a zstd context) between requests, so a
//! read costs one `pread` of the compressed block, one decompression into a
//! recycled buffer and, for the usual request inside one block, no copy at
//! all before the reply.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, ReplyOpen, ReplyStatfs, Request,
};
use sik_image_lean::squashfs::{BLOCK_UNCOMPRESSED, Decoder, Image, InodeKind, walk};

/// The image never changes while mounted: let the kernel cache everything.
const TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// Decompressed blocks kept in memory.
const CACHE_BLOCKS: usize = 32;

struct FileData {
    /// Position in the image and size word of each data block.
    blocks: Vec<(u64, u32)>,
    /// Fragment block (position, size word) and offset in it.
    fragment: Option<(u64, u32, u32)>,
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
    image: Image<File>,
    block_size: u32,
    entries: Vec<Entry>,
    cache: Mutex<Cache>,
}

/// Decompressed blocks by position, oldest first, and buffers of evicted
/// blocks to decompress into again.
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
    /// The decoder (for zstd, a context: allocating one per block costs
    /// more than decompressing small blocks).
    decoder: Option<Decoder>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Why the tree could not be read: the image's fault, or ours.
enum Fail {
    Image(sik_image_lean::Error),
    Other(String),
}

impl From<sik_image_lean::Error> for Fail {
    fn from(e: sik_image_lean::Error) -> Fail {
        Fail::Image(e)
    }
}

/// Open the SquashFS at `offset` of `file` (named `path` in errors).
pub fn open_image(file: &File, path: &Path, offset: u64) -> Result<Image<File>, String> {
    let f = file
        .try_clone()
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    Image::open(f, offset)
        .map_err(|e| format!("cannot read the SquashFS of {}: {e}", path.display()))
}

impl SquashFs {
    /// Read the tree of the SquashFS at `offset` in `path`.
    pub fn open(path: &Path, offset: u64) -> Result<SquashFs, String> {
        let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let image = open_image(&file, path, offset)?;
        let mut meta = image.meta_cache();
        // Directories by their path (components joined with `/`).
        let mut dirs: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut entries: Vec<Entry> = Vec::new();
        let walked = walk(&image, &mut meta, &mut |path: &[Vec<u8>], inode, _| {
            let i = entries.len();
            let parent = match path.split_last() {
                None => 0,
                Some((_, up)) => *dirs
                    .get(&up.join(&b'/'))
                    .ok_or_else(|| Fail::Other("an entry has no parent directory".into()))?,
            };
            let name = OsString::from_vec(path.last().cloned().unwrap_or_default());
            let mut e = Entry {
                name,
                parent,
                kind: FileType::Directory,
                perm: inode.mode & 0o7777,
                uid: inode.uid,
                gid: inode.gid,
                mtime: inode.mtime,
                size: 0,
                rdev: 0,
                children: Vec::new(),
                data: None,
                link: None,
            };
            match &inode.kind {
                InodeKind::Dir(_) => {
                    dirs.insert(path.join(&b'/'), i);
                }
                InodeKind::File(f) => {
                    e.kind = FileType::RegularFile;
                    e.size = f.size;
                    let fragment = match f.fragment {
                        Some((index, off)) => {
                            let (at, word) = image.fragment(index)?;
                            Some((at, word, off))
                        }
                        None => None,
                    };
                    let mut at = f.blocks_start;
                    let blocks = f
                        .blocks
                        .iter()
                        .map(|&w| {
                            let here = at;
                            at += u64::from(w & !BLOCK_UNCOMPRESSED);
                            (here, w)
                        })
                        .collect();
                    e.data = Some(FileData { blocks, fragment });
                }
                InodeKind::Symlink(t) => {
                    e.kind = FileType::Symlink;
                    e.size = t.len() as u64;
                    e.link = Some(t.clone());
                }
                InodeKind::Char(d) => {
                    e.kind = FileType::CharDevice;
                    e.rdev = *d;
                }
                InodeKind::Block(d) => {
                    e.kind = FileType::BlockDevice;
                    e.rdev = *d;
                }
                InodeKind::Fifo => e.kind = FileType::NamedPipe,
                InodeKind::Socket => e.kind = FileType::Socket,
            }
            entries.push(e);
            Ok::<(), Fail>(())
        });
        match walked {
            Ok(()) => {}
            Err(Fail::Image(e)) => {
                return Err(format!(
                    "cannot read the SquashFS of {}: {e}",
                    path.display()
                ));
            }
            Err(Fail::Other(e)) => return Err(format!("{}: {e}", path.display())),
        }
        if entries.is_empty() {
            return Err("the SquashFS has no root directory".into());
        }
        for i in 1..entries.len() {
            let p = entries[i].parent;
            entries[p].children.push(i);
        }
        // Lookups search children by name in byte order.
        let mut sorted = Vec::with_capacity(entries.len());
        for i in 0..entries.len() {
            let mut c = std::mem::take(&mut entries[i].children);
            c.sort_by(|&a, &b| entries[a].name.cmp(&entries[b].name));
            sorted.push(c);
        }
        for (e, c) in entries.iter_mut().zip(sorted) {
            e.children = c;
        }
        Ok(SquashFs {
            block_size: image.layout.block_size,
            image,
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

    /// One decompressed block (data block or fragment block, at `at` in
    /// the image with size word `word`), cached.
    fn block(&self, at: u64, word: u32) -> Result<Arc<Vec<u8>>, Errno> {
        let mut out = {
            let Ok(mut c) = self.cache.lock() else {
                return Err(Errno::EIO);
            };
            if let Some((_, b)) = c.blocks.iter().find(|(k, _)| *k == at) {
                return Ok(b.clone());
            }
            c.spare.pop().unwrap_or_default()
        };
        let len = (word & !BLOCK_UNCOMPRESSED) as usize;
        let bs = self.block_size as usize;
        if len > bs {
            return Err(Errno::EIO);
        }
        SCRATCH.with(|s| -> Result<(), Errno> {
            let mut s = s.borrow_mut();
            let s = &mut *s;
            s.raw.resize(len, 0);
            self.image
                .read_data(&mut s.raw, at)
                .map_err(|_| Errno::EIO)?;
            if word & BLOCK_UNCOMPRESSED != 0 {
                out.clear();
                out.extend_from_slice(&s.raw);
            } else {
                let d = s
                    .decoder
                    .get_or_insert_with(|| Decoder::new(self.image.layout.compressor));
                d.decompress(&s.raw, &mut out, bs).map_err(|_| Errno::EIO)?;
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
            if s & !BLOCK_UNCOMPRESSED == 0 {
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
        let len = self.image.layout.bytes_used;
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
