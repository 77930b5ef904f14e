//! An exFAT filesystem inside a disk image or device, read and written in
//! user space (no kernel driver, no mounting, no root for image files).
//!
//! `mkfs.exfat` (exfatprogs) formats; this module does what a medium needs
//! afterwards: list, read (also as `Read + Seek` in place), make
//! directories, write and replace files, delete. Layout as in Microsoft's
//! exFAT specification: boot sector, one FAT, allocation bitmap, up-case
//! table, directory entry sets (file 0x85, stream extension 0xC0, file
//! names 0xC1) with their set checksum and name hash.
//!
//! New files are allocated contiguously when a free run is long enough
//! (stream flag NoFatChain), else as a FAT chain; new directories always
//! use a FAT chain so they can grow. A replaced file's new contents are
//! written to fresh clusters before its directory entry is switched over
//! and the old clusters freed, so an interrupted replace leaves the old
//! file. Only the volume's own metadata is trusted as far as it is
//! checked here: every cluster number and length is bounds-checked.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;

mod write;

/// The exFAT entry name limit in UTF-16 units.
pub const MAX_NAME: usize = 255;
const EOC: u32 = 0xFFFF_FFFF;
const ATTR_DIR: u16 = 0x10;
const ATTR_ARCHIVE: u16 = 0x20;
/// Stream extension flags: AllocationPossible, NoFatChain.
const ALLOC_POSSIBLE: u8 = 0x01;
const NO_FAT_CHAIN: u8 = 0x02;

fn bad(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn le64(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}

/// Whether a boot sector is exFAT's.
pub fn is_exfat(boot: &[u8]) -> bool {
    boot.len() >= 512 && &boot[3..11] == b"EXFAT   "
}

/// Why a name cannot be an exFAT file name, `None` when it can.
pub fn name_refused(name: &str) -> Option<String> {
    let units = name.encode_utf16().count();
    if name.is_empty() || name == "." || name == ".." {
        return Some(format!("{name:?} is not a file name"));
    }
    if units > MAX_NAME {
        return Some(format!(
            "{name:?} is longer than exFAT's {MAX_NAME} characters"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| (*c as u32) < 0x20 || "\"*/:<>?\\|".contains(*c))
    {
        return Some(format!(
            "{name:?} holds {c:?}, which exFAT does not allow in names"
        ));
    }
    None
}

/// Where a directory's entries are: its first cluster, and whether its
/// clusters are contiguous without FAT entries (`len` bytes then).
#[derive(Debug, Clone, Copy)]
struct Loc {
    first: u32,
    contiguous: bool,
    len: u64,
}

/// One directory entry set as found.
#[derive(Debug, Clone)]
pub struct Entry {
    /// File name.
    pub name: String,
    /// Whether it is a directory.
    pub is_dir: bool,
    /// Size in bytes (DataLength).
    pub size: u64,
    valid: u64,
    first: u32,
    contiguous: bool,
    /// Byte offset of the set within its directory, and its entry count.
    at: u64,
    count: usize,
}

impl Entry {
    fn loc(&self) -> Loc {
        Loc {
            first: self.first,
            contiguous: self.contiguous,
            len: self.size,
        }
    }
}

/// An opened exFAT volume.
pub struct ExFat {
    f: File,
    /// `f` is a regular file (a disk image): runs of zeros in a written
    /// file become holes instead of written blocks.
    image_file: bool,
    start: u64,
    cluster_shift: u32,
    fat_off: u64,
    heap_off: u64,
    clusters: u32,
    root: u32,
    serial: u32,
    bitmap: Vec<u8>,
    bitmap_loc: Loc,
    upcase: Vec<u16>,
}

impl ExFat {
    /// Open the volume starting at byte `start` of `f` (the image or
    /// device, opened read-write for writing).
    pub fn open(f: File, start: u64) -> io::Result<Self> {
        let mut boot = [0u8; 512];
        f.read_exact_at(&mut boot, start)?;
        if !is_exfat(&boot) {
            return Err(bad("no exFAT boot sector"));
        }
        let sector_shift = u32::from(boot[108]);
        let cluster_shift = sector_shift + u32::from(boot[109]);
        if !(9..=12).contains(&sector_shift) || cluster_shift > 25 {
            return Err(bad("exFAT boot sector: bad sector or cluster size"));
        }
        if boot[110] != 1 {
            return Err(bad(
                "exFAT with more than one FAT (TexFAT) is not supported",
            ));
        }
        let fat_off = u64::from(le32(&boot, 80)) << sector_shift;
        let heap_off = u64::from(le32(&boot, 88)) << sector_shift;
        let clusters = le32(&boot, 92);
        let fat_len = u64::from(le32(&boot, 84)) << sector_shift;
        if clusters > 0xFFFF_FFF5 || fat_len < (u64::from(clusters) + 2) * 4 {
            return Err(bad(
                "exFAT boot sector: FAT too small for the cluster count",
            ));
        }
        let image_file = f.metadata()?.file_type().is_file();
        let mut v = ExFat {
            f,
            image_file,
            start,
            cluster_shift,
            fat_off,
            heap_off,
            clusters,
            root: le32(&boot, 96),
            serial: le32(&boot, 100),
            bitmap: Vec::new(),
            bitmap_loc: Loc {
                first: 0,
                contiguous: false,
                len: 0,
            },
            upcase: (0..=0xFFFFu32).map(|c| c as u16).collect(),
        };
        v.check_cluster(v.root)?;
        let root = v.root_loc()?;
        let bytes = v.read_loc(root)?;
        let mut upcase = None;
        for e in bytes.chunks_exact(32) {
            match e[0] {
                0x00 => break,
                0x81 if e[1] & 1 == 0 => {
                    v.bitmap_loc = Loc {
                        first: le32(e, 20),
                        contiguous: false,
                        len: le64(e, 24),
                    };
                }
                0x82 => {
                    upcase = Some(Loc {
                        first: le32(e, 20),
                        contiguous: false,
                        len: le64(e, 24),
                    })
                }
                _ => {}
            }
        }
        if v.bitmap_loc.first == 0 || v.bitmap_loc.len < u64::from(clusters).div_ceil(8) {
            return Err(bad("exFAT: no allocation bitmap in the root directory"));
        }
        v.bitmap = v.read_loc(v.bitmap_loc)?;
        v.bitmap.truncate(clusters.div_ceil(8) as usize);
        if let Some(u) = upcase {
            let raw = v.read_loc(u)?;
            let mut i = 0usize;
            let mut words = raw.chunks_exact(2).map(|c| le16(c, 0));
            while let Some(w) = words.next() {
                if i > 0xFFFF {
                    break;
                }
                if w == 0xFFFF {
                    i += usize::from(words.next().unwrap_or(0));
                } else {
                    v.upcase[i] = w;
                    i += 1;
                }
            }
        }
        Ok(v)
    }

    /// The volume serial as GRUB and blkid print it (`XXXX-XXXX`).
    pub fn uuid(&self) -> String {
        format!("{:04X}-{:04X}", self.serial >> 16, self.serial & 0xFFFF)
    }

    fn cluster_bytes(&self) -> u64 {
        1u64 << self.cluster_shift
    }

    fn check_cluster(&self, c: u32) -> io::Result<()> {
        if c < 2 || c - 2 >= self.clusters {
            return Err(bad(format!("exFAT: cluster {c} out of range")));
        }
        Ok(())
    }

    fn cluster_pos(&self, c: u32) -> u64 {
        self.start + self.heap_off + (u64::from(c - 2) << self.cluster_shift)
    }

    fn fat_get(&self, c: u32) -> io::Result<u32> {
        let mut b = [0u8; 4];
        self.f
            .read_exact_at(&mut b, self.start + self.fat_off + u64::from(c) * 4)?;
        Ok(u32::from_le_bytes(b))
    }

    fn fat_set(&self, c: u32, v: u32) -> io::Result<()> {
        self.f.write_all_at(
            &v.to_le_bytes(),
            self.start + self.fat_off + u64::from(c) * 4,
        )
    }

    /// The clusters of a chain or contiguous run holding `len` bytes
    /// (`len` 0 with a FAT chain: follow the chain to its end).
    fn clusters_of(&self, loc: Loc) -> io::Result<Vec<u32>> {
        if loc.first == 0 {
            return Ok(Vec::new());
        }
        let want = loc.len.div_ceil(self.cluster_bytes());
        if want > u64::from(self.clusters) {
            return Err(bad("exFAT: a length beyond the volume"));
        }
        let mut v = Vec::new();
        if loc.contiguous {
            for i in 0..want as u32 {
                let c = loc
                    .first
                    .checked_add(i)
                    .ok_or_else(|| bad("exFAT: bad run"))?;
                self.check_cluster(c)?;
                v.push(c);
            }
            return Ok(v);
        }
        let mut c = loc.first;
        loop {
            self.check_cluster(c)?;
            v.push(c);
            if v.len() as u64 > u64::from(self.clusters) {
                return Err(bad("exFAT: a FAT chain loops"));
            }
            if loc.len != 0 && v.len() as u64 == want {
                break;
            }
            c = self.fat_get(c)?;
            if c == EOC {
                break;
            }
        }
        if loc.len != 0 && (v.len() as u64) < want {
            return Err(bad("exFAT: a FAT chain shorter than its file"));
        }
        Ok(v)
    }

    fn read_loc(&self, loc: Loc) -> io::Result<Vec<u8>> {
        let cl = self.clusters_of(loc)?;
        let cb = self.cluster_bytes() as usize;
        let mut out = vec![0u8; cl.len() * cb];
        for (i, c) in cl.iter().enumerate() {
            self.f
                .read_exact_at(&mut out[i * cb..(i + 1) * cb], self.cluster_pos(*c))?;
        }
        if loc.len != 0 {
            out.truncate(loc.len as usize);
        }
        Ok(out)
    }

    fn root_loc(&self) -> io::Result<Loc> {
        let n = self
            .clusters_of(Loc {
                first: self.root,
                contiguous: false,
                len: 0,
            })?
            .len() as u64;
        Ok(Loc {
            first: self.root,
            contiguous: false,
            len: n << self.cluster_shift,
        })
    }

    fn upper(&self, name: &str) -> Vec<u16> {
        name.encode_utf16()
            .map(|u| self.upcase[usize::from(u)])
            .collect()
    }

    /// The entry sets of a directory.
    fn entries(&self, dir: Loc) -> io::Result<Vec<Entry>> {
        let bytes = self.read_loc(dir)?;
        let mut out = Vec::new();
        let n = bytes.len() / 32;
        let mut i = 0;
        while i < n {
            let e = &bytes[i * 32..i * 32 + 32];
            if e[0] == 0 {
                break;
            }
            if e[0] != 0x85 {
                i += 1;
                continue;
            }
            let count = usize::from(e[1]);
            if count < 2 || i + count >= n {
                i += 1;
                continue;
            }
            let set = &bytes[i * 32..(i + 1 + count) * 32];
            let s = &set[32..64];
            if s[0] != 0xC0 || set_checksum(set) != le16(e, 2) {
                i += 1;
                continue;
            }
            let name_len = usize::from(s[3]);
            let mut units = Vec::new();
            for k in 2..=count {
                let ne = &set[k * 32..k * 32 + 32];
                if ne[0] != 0xC1 {
                    break;
                }
                units.extend((0..15).map(|j| le16(ne, 2 + 2 * j)));
            }
            units.truncate(name_len);
            out.push(Entry {
                name: String::from_utf16_lossy(&units),
                is_dir: le16(e, 4) & ATTR_DIR != 0,
                size: le64(s, 24),
                valid: le64(s, 8),
                first: le32(s, 20),
                contiguous: s[1] & NO_FAT_CHAIN != 0,
                at: (i * 32) as u64,
                count: count + 1,
            });
            i += count + 1;
        }
        Ok(out)
    }

    fn find(&self, dir: Loc, name: &str) -> io::Result<Option<Entry>> {
        let up = self.upper(name);
        Ok(self
            .entries(dir)?
            .into_iter()
            .find(|e| self.upper(&e.name) == up))
    }

    /// Resolve a path: `Ok(None)` when something on the way is missing.
    /// The parent directory and the entry (`None` entry: the root).
    fn resolve(&self, rel: &str) -> io::Result<Option<(Loc, Option<Entry>)>> {
        let mut dir = self.root_loc()?;
        let mut cur: Option<Entry> = None;
        for c in rel.split('/').filter(|c| !c.is_empty()) {
            if let Some(e) = &cur {
                if !e.is_dir {
                    return Ok(None);
                }
                dir = e.loc();
            }
            match self.find(dir, c)? {
                Some(e) => cur = Some(e),
                None => return Ok(None),
            }
        }
        Ok(Some((dir, cur)))
    }

    /// The directory at `rel` (`None`: missing or a file).
    fn dir_loc(&self, rel: &str) -> io::Result<Option<Loc>> {
        match self.resolve(rel)? {
            Some((_, None)) => self.root_loc().map(Some),
            Some((_, Some(e))) if e.is_dir => Ok(Some(e.loc())),
            _ => Ok(None),
        }
    }

    /// Entries of a directory (`None` when it does not exist).
    pub fn list(&self, rel: &str) -> io::Result<Option<Vec<Entry>>> {
        match self.dir_loc(rel)? {
            Some(l) => self.entries(l).map(Some),
            None => Ok(None),
        }
    }

    /// The entry at `rel` (`None` when missing; the root has none).
    pub fn stat(&self, rel: &str) -> io::Result<Option<Entry>> {
        Ok(self.resolve(rel)?.and_then(|(_, e)| e))
    }

    /// Whether `rel` exists (the root always does).
    pub fn exists(&self, rel: &str) -> io::Result<bool> {
        Ok(self.resolve(rel)?.is_some())
    }

    /// A reader of a file, in place.
    pub fn open_file(&self, rel: &str) -> io::Result<FileReader<'_>> {
        let e = self.stat(rel)?.filter(|e| !e.is_dir).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("{rel}: no such file"))
        })?;
        let clusters = self.clusters_of(e.loc())?;
        Ok(FileReader {
            fs: self,
            clusters,
            size: e.size,
            valid: e.valid.min(e.size),
            pos: 0,
        })
    }

    /// Free bytes.
    pub fn free_bytes(&self) -> u64 {
        let used: u64 = self.bitmap.iter().map(|b| u64::from(b.count_ones())).sum();
        (u64::from(self.clusters) - used.min(u64::from(self.clusters))) << self.cluster_shift
    }

    /// Bytes a file of `size` bytes takes (whole clusters).
    pub fn allocated(&self, size: u64) -> u64 {
        size.div_ceil(self.cluster_bytes()) << self.cluster_shift
    }
}

/// A file of the volume, read in place.
pub struct FileReader<'a> {
    fs: &'a ExFat,
    clusters: Vec<u32>,
    size: u64,
    valid: u64,
    pos: u64,
}

impl Read for FileReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let cb = self.fs.cluster_bytes();
        let in_cluster = cb - self.pos % cb;
        let n = (buf.len() as u64).min(in_cluster).min(self.size - self.pos) as usize;
        if self.pos >= self.valid {
            buf[..n].fill(0);
        } else {
            let c = self.clusters[(self.pos / cb) as usize];
            let n = n.min((self.valid - self.pos) as usize);
            self.fs
                .f
                .read_exact_at(&mut buf[..n], self.fs.cluster_pos(c) + self.pos % cb)?;
            self.pos += n as u64;
            return Ok(n);
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for FileReader<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = new.ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "seek before the file start")
        })?;
        Ok(self.pos)
    }
}

/// The entry set checksum (the first entry's bytes 2 and 3 left out).
fn set_checksum(set: &[u8]) -> u16 {
    let mut c: u16 = 0;
    for (i, b) in set.iter().enumerate() {
        if i == 2 || i == 3 {
            continue;
        }
        c = c.rotate_right(1).wrapping_add(u16::from(*b));
    }
    c
}

/// The stream extension's name hash of an up-cased name.
fn name_hash(up: &[u16]) -> u16 {
    let mut h: u16 = 0;
    for u in up {
        for b in u.to_le_bytes() {
            h = h.rotate_right(1).wrapping_add(u16::from(b));
        }
    }
    h
}
