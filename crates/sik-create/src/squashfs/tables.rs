//! Metadata of the image: inode and directory tables, fragment, id and
//! xattr tables, superblock. Written once, after all data blocks.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};

use super::compress::Codec;
use super::pipeline::Placed;
use super::{FileData, Kind, Node, SPARSE, Summary, WriteError, WriterOptions, xattr_prefix};

use sik_image::squashfs::{NOT_SET, flags, padded_len};

/// Length of the superblock.
pub(crate) const SUPERBLOCK_LEN: u64 = sik_image::squashfs::SUPERBLOCK_LEN as u64;
/// Uncompressed size of a full metadata block.
const METADATA_SIZE: usize = 8192;
/// Bit 15 of a metadata block header: stored uncompressed.
const META_UNCOMPRESSED: u16 = 0x8000;
/// "No fragment" / "no xattr" in an inode.
const NONE32: u32 = u32::MAX;

/// Everything `finish` hands over.
pub(crate) struct Input<'a> {
    pub(crate) file: File,
    pub(crate) data_end: u64,
    pub(crate) placed: &'a [Placed],
    pub(crate) nodes: &'a [Node],
    pub(crate) files: &'a [FileData],
    pub(crate) frag_seqs: &'a [u64],
    pub(crate) opts: &'a WriterOptions,
    pub(crate) level: i32,
    pub(crate) comp_opts: &'a [u8],
    pub(crate) duplicate_files: u64,
}

/// A stream of metadata blocks being built in memory: 8 KiB uncompressed
/// blocks, each compressed and prefixed by its 2-byte header.
struct MetaStream {
    out: Vec<u8>,
    cur: Vec<u8>,
    /// Start (in `out`) of every block flushed so far.
    starts: Vec<u64>,
}

impl MetaStream {
    fn new() -> MetaStream {
        MetaStream {
            out: Vec::new(),
            cur: Vec::with_capacity(METADATA_SIZE),
            starts: Vec::new(),
        }
    }

    /// Reference of the next byte: (start of its block in the stream,
    /// offset in the uncompressed block).
    fn pos(&self) -> (u64, u16) {
        (self.out.len() as u64, self.cur.len() as u16)
    }

    /// Start of the `n`th block of the stream (flushed or the current one).
    fn block_start(&self, n: usize) -> u64 {
        self.starts.get(n).copied().unwrap_or(self.out.len() as u64)
    }

    fn put(&mut self, codec: &mut Codec, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let room = METADATA_SIZE - self.cur.len();
            let n = room.min(bytes.len());
            self.cur.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.cur.len() == METADATA_SIZE {
                self.flush(codec);
            }
        }
    }

    fn flush(&mut self, codec: &mut Codec) {
        if self.cur.is_empty() {
            return;
        }
        self.starts.push(self.out.len() as u64);
        push_meta_block(&mut self.out, codec, &self.cur);
        self.cur.clear();
    }

    fn finish(mut self, codec: &mut Codec) -> Vec<u8> {
        self.flush(codec);
        self.out
    }
}

/// Appends one metadata block (header + payload) holding `data` (≤ 8 KiB).
fn push_meta_block(out: &mut Vec<u8>, codec: &mut Codec, data: &[u8]) {
    match codec.compress(data) {
        Some(c) => {
            out.extend_from_slice(&(c.len() as u16).to_le_bytes());
            out.extend_from_slice(&c);
        }
        None => {
            out.extend_from_slice(&(data.len() as u16 | META_UNCOMPRESSED).to_le_bytes());
            out.extend_from_slice(data);
        }
    }
}

/// Little-endian byte builder.
#[derive(Default)]
struct Bytes(Vec<u8>);

impl Bytes {
    fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.0.extend_from_slice(v);
        self
    }
}

/// Counts bytes written, so table positions are known without seeking.
struct Out {
    w: BufWriter<File>,
    pos: u64,
}

impl Out {
    fn write(&mut self, b: &[u8]) -> Result<(), WriteError> {
        self.w.write_all(b)?;
        self.pos += b.len() as u64;
        Ok(())
    }

    /// Writes `entries` as a table of metadata blocks followed by the array
    /// of their absolute positions; returns the position of that array.
    fn indexed_table(&mut self, codec: &mut Codec, entries: &[u8]) -> Result<u64, WriteError> {
        let mut index = Vec::new();
        for chunk in entries.chunks(METADATA_SIZE) {
            index.push(self.pos);
            let mut block = Vec::new();
            push_meta_block(&mut block, codec, chunk);
            self.write(&block)?;
        }
        let start = self.pos;
        let mut b = Bytes::default();
        for p in index {
            b.u64(p);
        }
        self.write(&b.0)?;
        Ok(start)
    }
}

/// Basic (1..=7) inode type of a node, as used in directory entries.
fn basic_type(kind: &Kind) -> u16 {
    match kind {
        Kind::Dir { .. } => 1,
        Kind::File { .. } => 2,
        Kind::Symlink(_) => 3,
        Kind::BlockDev(_) => 4,
        Kind::CharDev(_) => 5,
        Kind::Fifo => 6,
        Kind::Socket => 7,
    }
}

/// Inodes in the order they are written: a post-order walk (each
/// directory's children by name, descending into subdirectories, then the
/// directory itself); a hard-linked inode comes at its first name. Also
/// returns each directory's parent.
fn inode_order(nodes: &[Node]) -> (Vec<u32>, Vec<u32>) {
    let mut order = Vec::with_capacity(nodes.len());
    let mut seen = vec![false; nodes.len()];
    let mut parent = vec![u32::MAX; nodes.len()];
    let children = |id: u32| -> Vec<u32> {
        match &nodes[id as usize].kind {
            Kind::Dir { children, .. } => children.values().copied().collect(),
            _ => Vec::new(),
        }
    };
    let mut stack: Vec<(u32, Vec<u32>, usize)> = vec![(0, children(0), 0)];
    while let Some((dir, kids, i)) = stack.last_mut() {
        if *i < kids.len() {
            let child = kids[*i];
            *i += 1;
            let dir = *dir;
            if matches!(nodes[child as usize].kind, Kind::Dir { .. }) {
                parent[child as usize] = dir;
                stack.push((child, children(child), 0));
            } else if !seen[child as usize] {
                seen[child as usize] = true;
                order.push(child);
            }
        } else {
            let dir = *dir;
            stack.pop();
            seen[dir as usize] = true;
            order.push(dir);
        }
    }
    (order, parent)
}

/// Distinct uids/gids in first-use order (inode write order, uid before gid).
struct Ids {
    list: Vec<u32>,
    index: HashMap<u32, u16>,
}

impl Ids {
    fn get(&mut self, id: u32) -> Result<u16, WriteError> {
        if let Some(&i) = self.index.get(&id) {
            return Ok(i);
        }
        let i = u16::try_from(self.list.len())
            .ok()
            .filter(|&i| i < u16::MAX)
            .ok_or_else(|| WriteError::TooLarge("more than 65535 distinct uids/gids".into()))?;
        self.list.push(id);
        self.index.insert(id, i);
        Ok(i)
    }
}

/// One xattr set: (full name, value) pairs sorted by name.
type XattrSet = Vec<(Vec<u8>, Vec<u8>)>;

/// Distinct xattr sets, numbered in first-use order.
struct Xattrs {
    kv: MetaStream,
    /// Per set: reference into `kv`, count, size of its entries.
    ids: Vec<(u64, u32, u32)>,
    index: HashMap<XattrSet, u32>,
}

impl Xattrs {
    fn get(&mut self, codec: &mut Codec, set: &[(Vec<u8>, Vec<u8>)]) -> Result<u32, WriteError> {
        if set.is_empty() {
            return Ok(NONE32);
        }
        let mut sorted = set.to_vec();
        sorted.sort();
        if let Some(&i) = self.index.get(&sorted) {
            return Ok(i);
        }
        let i = u32::try_from(self.ids.len())
            .ok()
            .filter(|&i| i < NONE32)
            .ok_or_else(|| WriteError::TooLarge("too many xattr sets".into()))?;
        let (block, offset) = self.kv.pos();
        let mut size = 0u64;
        for (name, value) in &sorted {
            // Checked when the entry was added.
            let (prefix, rest) = xattr_prefix(name)
                .ok_or_else(|| WriteError::InvalidXattr(String::from_utf8_lossy(name).into()))?;
            let mut b = Bytes::default();
            b.u16(prefix).u16(rest.len() as u16).raw(rest);
            b.u32(value.len() as u32).raw(value);
            size += b.0.len() as u64;
            self.kv.put(codec, &b.0);
        }
        let size = u32::try_from(size)
            .map_err(|_| WriteError::TooLarge("xattr set larger than 4 GiB".into()))?;
        self.ids
            .push(((block << 16) | u64::from(offset), sorted.len() as u32, size));
        self.index.insert(sorted, i);
        Ok(i)
    }
}

/// Writes the tables after the data, then the superblock; pads the file.
pub(crate) fn write_tables(input: Input<'_>) -> Result<Summary, WriteError> {
    let Input {
        mut file,
        data_end,
        placed,
        nodes,
        files,
        frag_seqs,
        opts,
        level,
        comp_opts,
        ..
    } = input;
    let mut codec = Codec::new(opts.compressor, level, opts.block_size);
    let (order, parent) = inode_order(nodes);
    let inode_count = u32::try_from(order.len())
        .ok()
        .filter(|&n| n < u32::MAX - 1)
        .ok_or_else(|| WriteError::TooLarge("too many inodes".into()))?;
    let mut number = vec![0u32; nodes.len()];
    for (i, &id) in order.iter().enumerate() {
        number[id as usize] = i as u32 + 1;
    }

    let mut ids = Ids {
        list: Vec::new(),
        index: HashMap::new(),
    };
    let mut xattrs = Xattrs {
        kv: MetaStream::new(),
        ids: Vec::new(),
        index: HashMap::new(),
    };
    let mut inodes = MetaStream::new();
    let mut dirs = MetaStream::new();
    let mut refs = vec![0u64; nodes.len()];

    for &id in &order {
        let node = &nodes[id as usize];
        let m = &node.meta;
        let uid = ids.get(m.uid)?;
        let gid = ids.get(m.gid)?;
        let xattr = xattrs.get(&mut codec, &m.xattrs)?;
        let has_x = xattr != NONE32;
        let mut b = Bytes::default();
        let header = |b: &mut Bytes, t: u16| {
            b.u16(t)
                .u16(m.mode & 0o7777)
                .u16(uid)
                .u16(gid)
                .u32(m.mtime)
                .u32(number[id as usize]);
        };
        match &node.kind {
            Kind::Dir { children, .. } => {
                let (start_block, offset) = dirs.pos();
                let first_block = dirs.starts.len();
                let (listing, index) = dir_listing(children, nodes, &refs, &number);
                dirs.put(&mut codec, &listing);
                let subdirs = children
                    .values()
                    .filter(|&&c| matches!(nodes[c as usize].kind, Kind::Dir { .. }))
                    .count() as u32;
                let nlink = 2 + subdirs;
                let file_size = listing.len() as u64 + 3;
                let parent_no = if id == 0 {
                    inode_count + 1
                } else {
                    number[parent[id as usize] as usize]
                };
                let too_big = || WriteError::TooLarge("directory table over 4 GiB".into());
                let start_block = u32::try_from(start_block).map_err(|_| too_big())?;
                if index.is_empty() && file_size <= u64::from(u16::MAX) && !has_x {
                    header(&mut b, 1);
                    b.u32(start_block)
                        .u32(nlink)
                        .u16(file_size as u16)
                        .u16(offset)
                        .u32(parent_no);
                } else {
                    let file_size = u32::try_from(file_size).map_err(|_| too_big())?;
                    let i_count = u16::try_from(index.len()).map_err(|_| too_big())?;
                    header(&mut b, 8);
                    b.u32(nlink).u32(file_size).u32(start_block).u32(parent_no);
                    b.u16(i_count).u16(offset).u32(xattr);
                    for (at, name) in index {
                        let block =
                            first_block + (usize::from(offset) + at as usize) / METADATA_SIZE;
                        let block =
                            u32::try_from(dirs.block_start(block)).map_err(|_| too_big())?;
                        b.u32(at).u32(block).u32(name.len() as u32 - 1).raw(name);
                    }
                }
            }
            Kind::File { data } => {
                let fd = &files[*data as usize];
                let start = fd
                    .blocks
                    .iter()
                    .find(|&&s| s != SPARSE)
                    .map(|&s| placed[s as usize].pos)
                    .unwrap_or(0);
                let (frag, frag_off) = fd.fragment.unwrap_or((NONE32, 0));
                let basic = node.links == 1
                    && !has_x
                    && fd.sparse == 0
                    && fd.size <= u64::from(u32::MAX)
                    && start <= u64::from(u32::MAX);
                if basic {
                    header(&mut b, 2);
                    b.u32(start as u32)
                        .u32(frag)
                        .u32(frag_off)
                        .u32(fd.size as u32);
                } else {
                    header(&mut b, 9);
                    b.u64(start).u64(fd.size).u64(fd.sparse).u32(node.links);
                    b.u32(frag).u32(frag_off).u32(xattr);
                }
                for &s in &fd.blocks {
                    b.u32(if s == SPARSE {
                        0
                    } else {
                        placed[s as usize].size_word
                    });
                }
            }
            Kind::Symlink(target) => {
                header(&mut b, if has_x { 10 } else { 3 });
                b.u32(node.links).u32(target.len() as u32).raw(target);
                if has_x {
                    b.u32(xattr);
                }
            }
            Kind::BlockDev(rdev) | Kind::CharDev(rdev) => {
                let block = matches!(node.kind, Kind::BlockDev(_));
                let t = match (block, has_x) {
                    (true, false) => 4,
                    (false, false) => 5,
                    (true, true) => 11,
                    (false, true) => 12,
                };
                header(&mut b, t);
                b.u32(node.links).u32(*rdev);
                if has_x {
                    b.u32(xattr);
                }
            }
            Kind::Fifo | Kind::Socket => {
                let fifo = matches!(node.kind, Kind::Fifo);
                let t = match (fifo, has_x) {
                    (true, false) => 6,
                    (false, false) => 7,
                    (true, true) => 13,
                    (false, true) => 14,
                };
                header(&mut b, t);
                b.u32(node.links);
                if has_x {
                    b.u32(xattr);
                }
            }
        }
        let (block, offset) = inodes.pos();
        if block > u64::from(u32::MAX) {
            return Err(WriteError::TooLarge("inode table over 4 GiB".into()));
        }
        refs[id as usize] = (block << 16) | u64::from(offset);
        inodes.put(&mut codec, &b.0);
    }
    let root_ref = refs[0];

    // Tables, in mksquashfs's order: inodes, directories, fragments, ids,
    // xattrs (the kernel requires the xattr id table to end at bytes_used).
    file.seek(SeekFrom::Start(data_end))?;
    let mut out = Out {
        w: BufWriter::with_capacity(1 << 20, file),
        pos: data_end,
    };
    let inode_table = out.pos;
    out.write(&inodes.finish(&mut codec))?;
    let dir_table = out.pos;
    out.write(&dirs.finish(&mut codec))?;

    let mut frag_entries = Bytes::default();
    for &seq in frag_seqs {
        let p = placed[seq as usize];
        frag_entries.u64(p.pos).u32(p.size_word).u32(0);
    }
    let frag_table = out.indexed_table(&mut codec, &frag_entries.0)?;

    let mut id_entries = Bytes::default();
    for &i in &ids.list {
        id_entries.u32(i);
    }
    let id_table = out.indexed_table(&mut codec, &id_entries.0)?;

    let xattr_sets = xattrs.ids.len() as u32;
    let xattr_table = if xattrs.ids.is_empty() {
        NOT_SET
    } else {
        let kv_start = out.pos;
        out.write(&xattrs.kv.finish(&mut codec))?;
        let mut entries = Bytes::default();
        for &(r, count, size) in &xattrs.ids {
            entries.u64(r).u32(count).u32(size);
        }
        let mut index = Vec::new();
        for chunk in entries.0.chunks(METADATA_SIZE) {
            index.push(out.pos);
            let mut block = Vec::new();
            push_meta_block(&mut block, &mut codec, chunk);
            out.write(&block)?;
        }
        let start = out.pos;
        let mut b = Bytes::default();
        b.u64(kv_start).u32(xattr_sets).u32(0);
        for p in index {
            b.u64(p);
        }
        out.write(&b.0)?;
        start
    };
    let bytes_used = out.pos;
    let mut file = out
        .w
        .into_inner()
        .map_err(|e| WriteError::Io(e.into_error()))?;

    let mut sb_flags = flags::DUPLICATES;
    if xattr_table == NOT_SET {
        sb_flags |= flags::NO_XATTRS;
    }
    if !comp_opts.is_empty() {
        sb_flags |= flags::COMPRESSOR_OPTIONS;
    }
    let id_count = ids.list.len() as u16;
    let fragment_count = frag_seqs.len() as u32;
    let mut sb = Bytes::default();
    sb.u32(0x7371_7368)
        .u32(inode_count)
        .u32(opts.mod_time)
        .u32(opts.block_size);
    sb.u32(fragment_count).u16(opts.compressor.id());
    sb.u16(opts.block_size.trailing_zeros() as u16)
        .u16(sb_flags)
        .u16(id_count)
        .u16(4)
        .u16(0);
    sb.u64(root_ref)
        .u64(bytes_used)
        .u64(id_table)
        .u64(xattr_table);
    sb.u64(inode_table)
        .u64(dir_table)
        .u64(frag_table)
        .u64(NOT_SET);
    if !comp_opts.is_empty() {
        sb.u16(comp_opts.len() as u16 | META_UNCOMPRESSED)
            .raw(comp_opts);
    }
    file.seek(SeekFrom::Start(0))?;
    file.write_all(&sb.0)?;
    let file_len = padded_len(bytes_used);
    file.set_len(file_len)?;
    Ok(Summary {
        bytes_used,
        file_len,
        inode_count,
        id_count,
        fragment_count,
        duplicate_files: input.duplicate_files,
        xattr_sets,
    })
}

/// The directory listing of one directory, built as mksquashfs does:
/// entries sorted by name, grouped under headers; a new header starts after
/// 256 entries, when the inode lies in another inode-table block, when its
/// number is too far from the header's base for the 16-bit difference, or
/// when the listing since the last index point would exceed 8 KiB — then
/// an index entry (listing offset, first name) is recorded for the
/// extended directory inode.
fn dir_listing<'n>(
    children: &'n std::collections::BTreeMap<Vec<u8>, u32>,
    nodes: &[Node],
    refs: &[u64],
    number: &[u32],
) -> (Vec<u8>, Vec<(u32, &'n [u8])>) {
    let mut b = Bytes::default();
    let mut index = Vec::new();
    let mut index_from = 0usize;
    let mut count_at: Option<usize> = None;
    let mut count = 0u32;
    let mut hdr_block = 0u64;
    let mut hdr_number = 0u32;
    for (name, &c) in children {
        let r = refs[c as usize];
        let num = number[c as usize];
        let block = r >> 16;
        let entry_len = 8 + name.len();
        let over = count_at.is_some() && b.0.len() + entry_len - index_from > METADATA_SIZE;
        let diff = i64::from(num) - i64::from(hdr_number);
        if count_at.is_none()
            || count == 256
            || block != hdr_block
            || over
            || i16::try_from(diff).is_err()
        {
            if let Some(at) = count_at {
                b.0[at..at + 4].copy_from_slice(&(count - 1).to_le_bytes());
                if over {
                    index.push((b.0.len() as u32, name.as_slice()));
                    index_from = b.0.len();
                }
            }
            count_at = Some(b.0.len());
            count = 0;
            hdr_block = block;
            hdr_number = num;
            b.u32(0).u32(block as u32).u32(num);
        }
        let diff = (i64::from(num) - i64::from(hdr_number)) as i16;
        let t = basic_type(&nodes[c as usize].kind);
        b.u16((r & 0xffff) as u16)
            .u16(diff as u16)
            .u16(t)
            .u16((name.len() - 1) as u16)
            .raw(name);
        count += 1;
    }
    if let Some(at) = count_at {
        b.0[at..at + 4].copy_from_slice(&(count - 1).to_le_bytes());
    }
    (b.0, index)
}
